//! Stage 2½: muting. An alert that an active silence mutes
//! ([`crate::silence`]), or that fires again while acknowledged
//! ([`crate::active`]), has been counted and is recorded — in the
//! notification history with `silencedBy` or `acknowledgedBy`, and as a
//! `silenced` or `acknowledged` step in its events' traces — but it is
//! never routed or handed to a channel.

use crate::event::now_ms;
use crate::plugin::bindings::Alert;
use crate::silence::{alert_label, Silences};

/// The ids of the silences muting `alert` of `rule` now (none: notify).
pub fn muting(silences: &Silences, rule: &str, alert: &Alert) -> Vec<String> {
    silences.muting(now_ms(), |name| alert_label(rule, alert, name))
}

/// Why an alert is recorded and not notified.
pub enum Muted {
    /// By these silences.
    Silenced(Vec<String>),
    /// It is acknowledged.
    Acknowledged(crate::active::Ack),
}

impl Muted {
    /// Its trace step's stage, and the metric counting it.
    pub fn stage(&self) -> (&'static str, &'static str) {
        match self {
            Muted::Silenced(_) => ("silenced", "tocsin_alerts_silenced_total"),
            Muted::Acknowledged(_) => ("acknowledged", "tocsin_alerts_acknowledged_total"),
        }
    }

    /// What the trace step says of it.
    pub fn detail(&self) -> String {
        match self {
            Muted::Silenced(ids) => format!("muted by silence {}", ids.join(", ")),
            Muted::Acknowledged(a) => format!("acknowledged by {}", a.by),
        }
    }

    /// Its field in the notification history's alert.
    pub fn record(&self, alert: &mut serde_json::Value) {
        match self {
            Muted::Silenced(ids) => alert["silencedBy"] = serde_json::json!(ids),
            Muted::Acknowledged(a) => {
                alert["acknowledgedBy"] =
                    serde_json::json!({ "by": a.by, "comment": a.comment, "at": a.at })
            }
        }
    }
}

/// Why `rule`'s `alert` is not notified, if it is not: its acknowledgement
/// (`ack`), else the silences muting it now.
pub fn muted(
    silences: &Silences,
    rule: &str,
    alert: &Alert,
    ack: Option<&crate::active::Ack>,
) -> Option<Muted> {
    if let Some(a) = ack {
        return Some(Muted::Acknowledged(a.clone()));
    }
    let ids = muting(silences, rule, alert);
    (!ids.is_empty()).then_some(Muted::Silenced(ids))
}
