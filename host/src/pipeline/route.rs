//! Stage 3: the rule's router plugin picks channels for an alert; a
//! channel whose `mute-times` cover now (or whose `active-times` do not,
//! [`crate::interval`]) is left out ([`scheduled`]).

use std::time::Instant;

use crate::catalog::{ActiveRule, ChannelBinding, Generation};
use crate::plugin::bindings::Alert;
use crate::plugin::Instances;

/// `channels` without those that their schedule mutes at `now_ms`, and
/// what muted each one left out (for the trail).
pub fn scheduled(
    g: &Generation,
    rule: &ActiveRule,
    channels: Vec<ChannelBinding>,
    now_ms: i64,
) -> (Vec<ChannelBinding>, Vec<String>) {
    let mut kept = Vec::with_capacity(channels.len());
    let mut muted = Vec::new();
    for c in channels {
        match c.schedule.muted_by(&g.intervals, now_ms) {
            None => kept.push(c),
            Some(why) => {
                metrics::counter!("tocsin_channel_muted_total", "rule" => rule.name.to_string(), "channel" => c.name.to_string()).increment(1);
                muted.push(format!("{} ({why})", c.name));
            }
        }
    }
    (kept, muted)
}

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
