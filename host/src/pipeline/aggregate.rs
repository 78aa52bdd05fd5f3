//! Stage 2: the rule's aggregator plugin turns matched events into alerts.

use std::time::Instant;

use super::matcher::Matched;
use super::observe::observe;
use crate::catalog::{ActiveRule, Generation};
use crate::plugin::bindings::{Alert, ErrorEvent};
use crate::plugin::{CallError, Instances};
use crate::state::BatchScope;

/// Calls the aggregator of `rule` with `events`; returns its alerts with
/// the rule name filled in (counted in `tocsin_alerts_total` once the
/// batch commits, see [`super::Worker::process`]). A failed call loses no other rule's work; its
/// events are counted in `tocsin_events_failed_total`.
pub async fn run(
    instances: &mut Instances,
    g: &Generation,
    rule: &ActiveRule,
    events: &[ErrorEvent],
    view: &crate::state::StateView,
) -> Result<Vec<Alert>, CallError> {
    let Some(u) = g.plugin_use(&rule.aggregate.plugin) else {
        return Ok(Vec::new());
    };
    let started = Instant::now();
    let result = instances
        .aggregate(
            u,
            &rule.aggregate.binding,
            rule.name.clone(),
            events,
            view.clone(),
        )
        .await;
    observe(
        &rule.name,
        &rule.aggregate.plugin,
        "aggregate",
        started,
        &result,
    );
    match result {
        Ok(mut alerts) => {
            for a in &mut alerts {
                if a.rule.is_empty() {
                    a.rule = rule.name.to_string();
                }
            }
            Ok(alerts)
        }
        Err(e) => {
            metrics::counter!("tocsin_events_failed_total", "rule" => rule.name.to_string())
                .increment(events.len() as u64);
            Err(e)
        }
    }
}

/// [`run`] inside an undo point: when the call fails, what it wrote is
/// undone (in a transaction) and the rule forgets it counted these events
/// ([`super::dedup::unmark`]), so a redelivery counts them.
pub async fn guarded(
    instances: &mut Instances,
    g: &Generation,
    rule: &ActiveRule,
    matched: &Matched,
    scope: &BatchScope,
) -> Result<Vec<Alert>, CallError> {
    let checkpoint = scope.checkpoint().await;
    let result = run(instances, g, rule, &matched.events, &scope.view).await;
    if result.is_err() {
        scope.restore(checkpoint).await;
        super::dedup::unmark(&scope.view, rule, &matched.marked).await;
    }
    result
}
