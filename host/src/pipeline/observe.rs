//! What every plugin-calling stage records about a call: the one place
//! that names the plugin-call metrics, so each stage reports alike.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;

use crate::plugin::CallError;

/// A rule's failed plugin calls since the start, for `/v1/rules`: the
/// metric `tocsin_plugin_errors_total` counts them by plugin; this says
/// which rule they hurt, and the last reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RuleFailures {
    /// Failed calls by kind (`deadline`, `memory`, `trap`, `quota`, ...).
    pub by_kind: BTreeMap<&'static str, u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

static FAILURES: LazyLock<Mutex<HashMap<String, RuleFailures>>> = LazyLock::new(Mutex::default);

/// What `rule`'s plugins failed since the start, if anything.
pub fn failures(rule: &str) -> Option<RuleFailures> {
    FAILURES.lock().get(rule).cloned()
}

/// Every rule's failures since the start (what the self watch reads).
pub fn all_failures() -> Vec<(String, RuleFailures)> {
    FAILURES
        .lock()
        .iter()
        .map(|(r, f)| (r.clone(), f.clone()))
        .collect()
}

/// Records a plugin call's outcome in the metrics and the log.
pub fn observe<T>(
    rule: &str,
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
        tracing::warn!(rule, plugin, call, error = %e, "plugin call failed");
        if e.kind() == "deadline" {
            super::isolate::strike(rule, &e.to_string());
        }
        let mut all = FAILURES.lock();
        let f = all.entry(rule.to_string()).or_default();
        *f.by_kind.entry(e.kind()).or_default() += 1;
        f.last_error = Some(crate::plugin::quota::cut(&e.to_string(), 2048));
        f.last_error_at = Some(crate::event::now_ms());
        drop(all);
        // A failed call may have made the host lift megabytes it refused.
        crate::memory::give_back();
    }
}
