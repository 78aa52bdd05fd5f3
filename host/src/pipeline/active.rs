//! Stage 2¼: active alerts ([`crate::active`]). Every alert a rule fired
//! is recorded as active (until its rule's `resolve-after` passes without
//! another firing), and a resolution ends it, in the batch's own state
//! scope: the record commits or is redone with the counts behind it. A
//! silenced alert is recorded too: it is firing, only not notified. A
//! resolution goes on to the channels only if it ended an active alert.
//! An acknowledged alert firing again is recorded, not notified, until it
//! ends.

use std::collections::HashMap;

use super::resolve;
use crate::active::Ack;
use crate::catalog::ActiveRule;
use crate::event::now_ms;
use crate::plugin::bindings::Alert;
use crate::state::StateView;

/// Records `rule`'s `alerts` in `view`, and drops from them each
/// resolution whose alert is not active: nothing fired for that key (the
/// rule never alerted, or the alert already ended), so there is nothing
/// to resolve (`tocsin_resolutions_dropped_total{rule}`).
///
/// Returns the acknowledgements of the alerts among them that are
/// acknowledged, by key: those are recorded, not notified.
pub async fn run(
    view: &StateView,
    rule: &ActiveRule,
    alerts: &mut Vec<Alert>,
) -> HashMap<String, Ack> {
    let now = now_ms();
    let mut acked = HashMap::new();
    let mut keep = Vec::with_capacity(alerts.len());
    for alert in alerts.drain(..) {
        if !resolve::is_resolution(&alert) {
            let ack =
                crate::active::fired(view, &rule.name, &alert, now, rule.resolve_after_ms).await;
            if let Some(ack) = ack {
                acked.insert(alert.key.clone(), ack);
            }
            keep.push(alert);
            continue;
        }
        // One resolution for each alert it ends, under that alert's key
        // (so a channel keyed on it, like PagerDuty's dedup key, closes
        // what it opened).
        let ended = crate::active::resolved(view, &rule.name, &alert, rule.resolve_after_ms).await;
        if ended.is_empty() {
            metrics::counter!("tocsin_resolutions_dropped_total", "rule" => rule.name.to_string())
                .increment(1);
            tracing::debug!(rule = %rule.name, key = %alert.key, "resolution of an alert not firing: dropped");
        }
        for key in ended {
            let mut one = alert.clone();
            one.key = key;
            keep.push(one);
        }
    }
    *alerts = keep;
    acked
}
