//! `tocsin:plugin/log`: plugin log lines go to the host's log, labelled with
//! the plugin and the rule, so operators see them next to the host's own.
//!
//! Bounded per instance ([`crate::plugin::quota`]): lines are cut at
//! `log_line_bytes` and limited to `log_lines_per_second`; what is dropped
//! is counted (`tocsin_plugin_log_lines_dropped_total`) and summarised in
//! one warning a second, so a chatty plugin cannot flood the log.

use crate::plugin::bindings::aggregator::tocsin::plugin::log::{Host, Level};
use crate::plugin::quota::cut;
use crate::plugin::HostCtx;

impl Host for HostCtx {
    fn log(&mut self, level: Level, message: String) {
        let plugin = &*self.plugin;
        let rule = &*self.scope.rule;
        if !self.log_bucket.take(self.quotas.log_lines_per_second) {
            metrics::counter!("tocsin_plugin_log_lines_dropped_total", "plugin" => plugin.to_string())
                .increment(1);
            if let Some(dropped) = self.log_bucket.summary_due() {
                tracing::warn!(
                    plugin,
                    rule,
                    dropped,
                    "plugin log lines dropped: over [sandbox.quotas] log_lines_per_second = {}",
                    self.quotas.log_lines_per_second
                );
            }
            return;
        }
        let message = cut(&message, self.quotas.log_line_bytes);
        if let Some(logs) = &mut self.logs {
            let name = match level {
                Level::Trace => "trace",
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            };
            logs.push((name.to_string(), message.clone()));
        }
        match level {
            Level::Trace => tracing::trace!(plugin, rule, "{message}"),
            Level::Debug => tracing::debug!(plugin, rule, "{message}"),
            Level::Info => tracing::info!(plugin, rule, "{message}"),
            Level::Warn => tracing::warn!(plugin, rule, "{message}"),
            Level::Error => tracing::error!(plugin, rule, "{message}"),
        }
    }
}
