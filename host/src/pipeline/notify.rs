//! Stage 4: each chosen channel plugin renders the alert; the deliveries it
//! queued join the batch's [`Outgoing`], which the commit stage hands to
//! the delivery stage once the batch is durable.

use std::sync::Arc;
use std::time::Instant;

use crate::catalog::{ActiveRule, ChannelBinding, Generation};
use crate::deliver::{AlertContext, Outgoing};
use crate::event::Severity;
use crate::plugin::bindings::Alert;
use crate::plugin::Instances;

/// Runs every channel in `channels` for `alert` (notification
/// `notification_id`); deliveries to keep go to `out`.
pub async fn run(
    instances: &mut Instances,
    g: &Generation,
    rule: &ActiveRule,
    notification_id: &Arc<str>,
    alert: &Alert,
    channels: &[ChannelBinding],
    out: &mut Outgoing,
) {
    let service = alert
        .labels
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    for channel in channels {
        let Some(u) = g.plugin_use(&channel.target.plugin) else {
            continue;
        };
        let started = Instant::now();
        let result = instances
            .deliver(
                u,
                &channel.target.binding,
                rule.name.clone(),
                channel.grants.clone(),
                alert,
            )
            .await;
        super::observe::observe(
            &rule.name,
            &channel.target.plugin,
            "deliver",
            started,
            &result,
        );
        if let Ok(deliveries) = result {
            let ctx = AlertContext {
                notification_id: notification_id.clone(),
                retry: channel.retry,
                rule: rule.name.clone(),
                channel: channel.name.clone(),
                severity: Severity::from(alert.severity),
                service: service.clone(),
            };
            for d in deliveries {
                out.take(&ctx, d);
            }
        } else {
            metrics::counter!("tocsin_notifications_failed_total", "rule" => rule.name.to_string(), "channel" => Arc::clone(&channel.name).to_string()).increment(1);
        }
    }
}

/// Event ids a notification keeps as samples of what caused it: what the
/// dashboard opens the trace of.
pub(super) const SAMPLE_EVENTS: usize = 3;

/// A few ids of the events `alert` stands for ([`SAMPLE_EVENTS`]).
pub(super) fn samples(matched: &super::matcher::Matched, alert: &Alert) -> Vec<String> {
    super::covered(matched, alert)
        .take(SAMPLE_EVENTS)
        .map(|e| e.event_id.clone())
        .collect()
}

/// The history record of an alert; `events`, a few of the event ids it
/// stands for (empty for notifications made on time).
pub(super) fn row(
    id: &std::sync::Arc<str>,
    alert: &Alert,
    muted: Option<&super::silence::Muted>,
    events: Vec<String>,
) -> crate::deliver::NotificationRow {
    let severity = crate::event::Severity::from(alert.severity).as_str();
    let labels: serde_json::Map<String, serde_json::Value> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut alert_json = serde_json::json!({
        "rule": alert.rule, "key": alert.key, "count": alert.count, "severity": severity,
        "title": alert.title, "summary": alert.summary, "samples": alert.samples,
        "labels": labels, "firstSeen": alert.first_seen, "lastSeen": alert.last_seen,
    });
    if !events.is_empty() {
        alert_json["events"] = events.into();
    }
    if let Some(m) = muted {
        m.record(&mut alert_json);
    }
    crate::deliver::NotificationRow {
        id: id.to_string(),
        rule: alert.rule.clone(),
        key: alert.key.clone(),
        severity: severity.to_string(),
        title: alert.title.clone(),
        summary: alert.summary.clone(),
        count: alert.count,
        created_at: crate::event::now_ms(),
        alert_json: alert_json.to_string(),
    }
}
