//! `tocsin:plugin/log`: plugin log lines go to the host's log, labelled with
//! the plugin and the rule, so operators see them next to the host's own.

use crate::plugin::bindings::aggregator::tocsin::plugin::log::{Host, Level};
use crate::plugin::HostCtx;

/// Longest plugin log line kept; a chatty plugin must not flood the log.
const MAX_LINE: usize = 4096;

impl Host for HostCtx {
    fn log(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
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
        let plugin = &*self.plugin;
        let rule = &*self.scope.rule;
        match level {
            Level::Trace => tracing::trace!(plugin, rule, "{message}"),
            Level::Debug => tracing::debug!(plugin, rule, "{message}"),
            Level::Info => tracing::info!(plugin, rule, "{message}"),
            Level::Warn => tracing::warn!(plugin, rule, "{message}"),
            Level::Error => tracing::error!(plugin, rule, "{message}"),
        }
    }
}
