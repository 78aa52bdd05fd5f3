//! `log`: write alerts to the host's log.
//!
//! The simplest channel, useful as a baseline and for debugging rules: each
//! alert becomes one line, `[{rule}] {title}: {summary}`, at the configured
//! level, with the plugin and rule attached by the host.
//!
//! ```toml
//! [[rules.device-start.channels]]
//! plugin = "log"
//! level = "warn"   # trace, debug, info (default), warn, error
//! ```

wit_bindgen::generate!({
    path: "../../wit",
    world: "channel",
});

use tocsin::plugin::log::{log, Level};
use tocsin_plugin_support::{Registry, Table};

thread_local! {
    /// Level by binding (see [`Registry`]).
    static CONFIGS: Registry<Level> = const { Registry::new("log") };
}

/// Read the `level` setting.
fn parse(json: &str) -> Result<Level, String> {
    let mut t = Table::parse("log", json)?;
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
    t.finish()?;
    Ok(level)
}

/// The component's exports.
struct LogChannel;

impl Guest for LogChannel {
    fn configure(binding: String, config: String) -> Result<(), String> {
        let level = parse(&config)?;
        CONFIGS.with(|c| c.insert(&binding, level));
        Ok(())
    }

    fn deliver(binding: String, alert: Alert) -> Result<(), String> {
        let level = CONFIGS.with(|c| c.get(&binding))?;
        log(
            *level,
            &format!("[{}] {}: {}", alert.rule, alert.title, alert.summary),
        );
        Ok(())
    }
}

export!(LogChannel);
