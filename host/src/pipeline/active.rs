//! Stage 2¼: active alerts ([`crate::active`]). Every alert a rule fired
//! is recorded as active (until its rule's `resolve-after` passes without
//! another firing), and a resolution ends it, in the batch's own state
//! scope: the record commits or is redone with the counts behind it. A
//! silenced alert is recorded too: it is firing, only not notified.

use super::resolve;
use crate::catalog::ActiveRule;
use crate::event::now_ms;
use crate::plugin::bindings::Alert;
use crate::state::StateView;

/// Records `rule`'s `alerts` (and resolutions) in `view`.
pub async fn run(view: &StateView, rule: &ActiveRule, alerts: &[Alert]) {
    let now = now_ms();
    for alert in alerts {
        if resolve::is_resolution(alert) {
            crate::active::resolved(view, &rule.name, &alert.key).await;
        } else {
            crate::active::fired(view, &rule.name, alert, now, rule.resolve_after_ms).await;
        }
    }
}
