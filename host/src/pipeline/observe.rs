//! What every plugin-calling stage records about a call: the one place
//! that names the plugin-call metrics, so each stage reports alike.

use std::time::Instant;

use crate::plugin::CallError;

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
