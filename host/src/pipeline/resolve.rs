//! Stage 2, for resolutions: a resolved alert (an event with
//! [`Event::resolved`](crate::event::Event::resolved), from Prometheus or
//! Alertmanager) is not counted by the rule's aggregator; the host turns it
//! into a *resolution alert* that the rest of the pipeline routes, renders
//! and delivers like any alert (outbox, history, grants, `?rule=`).
//!
//! WIT 0.1.0 has no status field, so a resolution is marked by its labels:
//! `status` = `resolved` (the bundled channels render it as a resolution:
//! `"type": "resolved"` on the stream and in webhooks, a ✅ headline in
//! chat tools, `[RESOLVED]` in email subjects). Its key is
//! `<error-code>|<service>`, the `threshold` plugin's default key, and its
//! count is 0: it stands for no new error.

use crate::plugin::bindings::{Alert, ErrorEvent};

/// The label that marks a resolution, and its value.
pub const STATUS_LABEL: (&str, &str) = ("status", "resolved");

/// The resolution alerts of rule `rule` for its resolved events.
pub fn run(rule: &str, resolutions: &[ErrorEvent]) -> Vec<Alert> {
    resolutions.iter().map(|ev| alert(rule, ev)).collect()
}

/// The resolution alert of rule `rule` for the resolved event `ev`.
pub fn alert(rule: &str, ev: &ErrorEvent) -> Alert {
    let mut labels = vec![
        (STATUS_LABEL.0.to_string(), STATUS_LABEL.1.to_string()),
        ("error-code".to_string(), ev.error_code.clone()),
        ("service".to_string(), ev.service_name.clone()),
        ("source".to_string(), ev.source.clone()),
    ];
    for (k, v) in &ev.metadata {
        if !labels.iter().any(|(l, _)| l == k) {
            labels.push((k.clone(), v.clone()));
        }
    }
    Alert {
        key: format!("{}|{}", ev.error_code, ev.service_name),
        rule: rule.to_string(),
        count: 0,
        first_seen: ev.timestamp,
        last_seen: ev.received_at,
        severity: ev.severity,
        title: format!("{} on {} resolved", ev.error_code, ev.service_name),
        summary: ev.message.clone(),
        samples: Vec::new(),
        labels,
    }
}

/// Whether `alert` is a resolution (it carries [`STATUS_LABEL`]).
pub fn is_resolution(alert: &Alert) -> bool {
    alert
        .labels
        .iter()
        .any(|(k, v)| k == STATUS_LABEL.0 && v == STATUS_LABEL.1)
}
