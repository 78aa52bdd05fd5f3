//! `log`: write alerts to the host's log.
//!
//! The simplest channel, useful as a baseline and for debugging rules: each
//! alert becomes one line, `[{rule}] {title}: {summary}`, at the configured
//! level, with the plugin and rule attached by the host.
//!
//! ```toml
//! [[channels]]
//! plugin = "log"
//! config = { level = "warn" }   # trace, debug, info (default), warn, error
//! ```

use tocsin_plugin_sdk::channel::{Alert, Channel};
use tocsin_plugin_sdk::log::log;
use tocsin_plugin_sdk::{Level, Table};

/// Settings of one binding: the level alerts are logged at.
struct LogChannel(Level);

/// Read the `level` setting.
fn read(t: &mut Table) -> Result<Level, String> {
    let level = match t.string("level")?.as_deref() {
        None | Some("info") => Level::Info,
        Some("trace") => Level::Trace,
        Some("debug") => Level::Debug,
        Some("warn") | Some("warning") => Level::Warn,
        Some("error") => Level::Error,
        Some(other) => {
            return Err(t.error(
                "level",
                format!("unknown level \"{other}\" (use trace, debug, info, warn or error)"),
            ))
        }
    };
    Ok(level)
}

impl Channel for LogChannel {
    const NAME: &'static str = "log";

    fn configure(config: &mut Table) -> Result<Self, String> {
        read(config).map(LogChannel)
    }

    fn deliver(&self, alert: Alert) -> Result<(), String> {
        log(
            self.0,
            &format!("[{}] {}: {}", alert.rule, alert.title, alert.summary),
        );
        Ok(())
    }
}

tocsin_plugin_sdk::export_channel!(LogChannel);
