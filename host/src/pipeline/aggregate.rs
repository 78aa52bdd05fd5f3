//! Stage 2: the rule's aggregator plugin turns matched events into alerts.

use std::time::Instant;

use crate::catalog::{ActiveRule, Generation};
use crate::plugin::bindings::{Alert, ErrorEvent};
use crate::plugin::{CallError, Instances};

/// Records a plugin call's outcome in the metrics and the log.
pub fn observe<T>(
    plugin: &str,
    call: &'static str,
    started: Instant,
    result: &Result<T, CallError>,
) {
    metrics::counter!("tocsin_plugin_calls_total", "plugin" => plugin.to_string(), "call" => call)
        .increment(1);
    metrics::histogram!("tocsin_plugin_call_seconds", "plugin" => plugin.to_string(), "call" => call)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = result {
        metrics::counter!("tocsin_plugin_errors_total", "plugin" => plugin.to_string(), "kind" => e.kind()).increment(1);
        if e.is_trap() {
            metrics::counter!("tocsin_plugin_traps_total", "plugin" => plugin.to_string())
                .increment(1);
        }
        tracing::warn!(plugin, call, error = %e, "plugin call failed");
    }
}

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
    observe(&rule.aggregate.plugin, "aggregate", started, &result);
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
