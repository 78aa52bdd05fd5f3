//! Stage 3: the rule's router plugin picks channels for an alert.

use std::time::Instant;

use crate::catalog::{ActiveRule, ChannelBinding, Generation};
use crate::plugin::bindings::Alert;
use crate::plugin::Instances;

/// The channels of `rule` that should deliver `alert`. Without a router,
/// every channel. If the router fails, every channel too: a broken router
/// must not silence an alert.
pub async fn run(
    instances: &mut Instances,
    g: &Generation,
    rule: &ActiveRule,
    alert: &Alert,
) -> Vec<ChannelBinding> {
    let Some(route) = &rule.route else {
        return rule.channels.clone();
    };
    let Some(u) = g.plugin_use(&route.plugin) else {
        return rule.channels.clone();
    };
    let started = Instant::now();
    let result = instances
        .route(
            u,
            &route.binding,
            rule.name.clone(),
            alert,
            &rule.channel_names,
        )
        .await;
    super::observe::observe(&rule.name, &route.plugin, "route", started, &result);
    match result {
        Ok(names) => {
            for n in &names {
                if !rule.channel_names.contains(n) {
                    tracing::warn!(rule = %rule.name, channel = %n, "router named an unknown channel; ignored");
                }
            }
            rule.channels
                .iter()
                .filter(|c| names.iter().any(|n| **n == *c.name))
                .cloned()
                .collect()
        }
        Err(_) => rule.channels.clone(),
    }
}
