//! Stage 2½: silences ([`crate::silence`]). An alert that an active
//! silence mutes has been counted and is recorded — in the notification
//! history with `silencedBy`, and as a `silenced` step in its events'
//! traces — but it is never routed or handed to a channel.

use crate::event::now_ms;
use crate::plugin::bindings::Alert;
use crate::silence::{alert_label, Silences};

/// The ids of the silences muting `alert` of `rule` now (none: notify).
pub fn muting(silences: &Silences, rule: &str, alert: &Alert) -> Vec<String> {
    silences.muting(now_ms(), |name| alert_label(rule, alert, name))
}
