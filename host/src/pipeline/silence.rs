//! Stage 2½: muting. An alert that an active silence mutes
//! ([`crate::silence`]), or that fires again while acknowledged
//! ([`crate::active`]), has been counted and is recorded — in the
//! notification history with `silencedBy` or `acknowledgedBy`, and as a
//! `silenced` or `acknowledged` step in its events' traces — but it is
//! never routed or handed to a channel. Inhibition, which needs the other
//! active alerts, is [`super::inhibit`].

use crate::event::now_ms;
use crate::plugin::bindings::Alert;
use crate::silence::{alert_label, Silences};

/// Why an alert is recorded and not notified.
pub enum Muted {
    /// By these silences.
    Silenced(Vec<String>),
    /// It is acknowledged.
    Acknowledged(crate::active::Ack),
    /// Active alerts (these fingerprints) inhibit it ([`super::inhibit`]).
    Inhibited(Vec<String>),
    /// Its rule's time intervals ([`crate::interval`]): why.
    Scheduled(String),
}

impl Muted {
    /// Its trace step's stage, and the metric counting it.
    pub fn stage(&self) -> (&'static str, &'static str) {
        match self {
            Muted::Silenced(_) => ("silenced", "tocsin_alerts_silenced_total"),
            Muted::Acknowledged(_) => ("acknowledged", "tocsin_alerts_acknowledged_total"),
            Muted::Inhibited(_) => ("inhibited", "tocsin_alerts_inhibited_total"),
            Muted::Scheduled(_) => ("mute-time", "tocsin_alerts_time_muted_total"),
        }
    }

    /// What the trace step says of it.
    pub fn detail(&self) -> String {
        match self {
            Muted::Silenced(ids) => format!("muted by silence {}", ids.join(", ")),
            Muted::Acknowledged(a) => format!("acknowledged by {}", a.by),
            Muted::Inhibited(by) => format!("inhibited by active alert {}", by.join(", ")),
            Muted::Scheduled(why) => format!("not notified: {why}"),
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
            Muted::Inhibited(by) => alert["inhibitedBy"] = serde_json::json!(by),
            Muted::Scheduled(why) => alert["mutedBy"] = serde_json::json!(why),
        }
    }
}

/// Why `rule`'s `alert` is not notified, if it is not: its acknowledgement
/// (`ack`), else the silences muting it now, else the rule's time
/// intervals (`intervals`).
pub fn muted(
    silences: &Silences,
    rule: &crate::catalog::ActiveRule,
    intervals: &crate::interval::Intervals,
    alert: &Alert,
    ack: Option<&crate::active::Ack>,
) -> Option<Muted> {
    if let Some(a) = ack {
        return Some(Muted::Acknowledged(a.clone()));
    }
    let now = now_ms();
    let ids = silences.muting(now, |name| alert_label(&rule.name, alert, name));
    if !ids.is_empty() {
        return Some(Muted::Silenced(ids));
    }
    rule.schedule.muted_by(intervals, now).map(Muted::Scheduled)
}
