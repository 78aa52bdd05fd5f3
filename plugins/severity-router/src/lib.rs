//! `severity-router`: pick an alert's channels by its severity.
//!
//! Critical and high alerts reach people (every channel of the rule); medium
//! and low ones stay on the dashboard (`websocket`, `log`) unless configured
//! otherwise. `"*"` stands for all of the rule's channels; `channels`
//! overrides the per-severity lists.
//!
//! ```toml
//! [rules.device-start.router]
//! plugin = "severity-router"
//! critical = ["*"]                 # default
//! high = ["*"]                     # default
//! medium = ["websocket", "log"]    # default
//! low = ["websocket", "log"]       # default
//! # channels = ["log"]             # always exactly these
//! ```

wit_bindgen::generate!({
    path: "../../wit",
    world: "router",
});

use tocsin::plugin::types::Severity;
use tocsin_plugin_support::{Registry, Table};

thread_local! {
    /// Configurations by binding (see [`Registry`]).
    static CONFIGS: Registry<Config> = const { Registry::new("severity-router") };
}

/// Channel names by severity (`"*"`: all of the rule's channels).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    critical: Vec<String>,
    high: Vec<String>,
    medium: Vec<String>,
    low: Vec<String>,
}

impl Config {
    fn parse(json: &str) -> Result<Config, String> {
        let mut t = Table::parse("severity-router", json)?;
        let all = || vec!["*".to_string()];
        let dashboard = || vec!["websocket".to_string(), "log".to_string()];
        let mut config = Config {
            critical: names(&mut t, "critical")?.unwrap_or_else(all),
            high: names(&mut t, "high")?.unwrap_or_else(all),
            medium: names(&mut t, "medium")?.unwrap_or_else(dashboard),
            low: names(&mut t, "low")?.unwrap_or_else(dashboard),
        };
        if let Some(always) = names(&mut t, "channels")? {
            config = Config {
                critical: always.clone(),
                high: always.clone(),
                medium: always.clone(),
                low: always,
            };
        }
        t.finish()?;
        Ok(config)
    }

    fn for_severity(&self, severity: Severity) -> &[String] {
        match severity {
            Severity::Critical => &self.critical,
            Severity::High => &self.high,
            Severity::Medium => &self.medium,
            Severity::Low => &self.low,
        }
    }
}

/// A list of channel names; empty names are rejected (an empty list is
/// fine: it silences that severity).
fn names(t: &mut Table, key: &'static str) -> Result<Option<Vec<String>>, String> {
    let list = t.strings(key)?;
    if let Some(list) = &list {
        if list.iter().any(|name| name.trim().is_empty()) {
            return Err(t.error(key, "channel names must not be empty"));
        }
    }
    Ok(list)
}

/// The entries of `channels` (in the rule's order, without duplicates) that
/// `wanted` names or, with `"*"`, all of them. Names the rule lacks are
/// dropped: a default like `websocket` must not break rules without one.
fn select(wanted: &[String], channels: &[String]) -> Vec<String> {
    let all = wanted.iter().any(|w| w == "*");
    let mut out: Vec<String> = Vec::new();
    for channel in channels {
        if (all || wanted.contains(channel)) && !out.contains(channel) {
            out.push(channel.clone());
        }
    }
    out
}

/// The component's exports.
struct SeverityRouter;

impl Guest for SeverityRouter {
    fn configure(binding: String, config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        CONFIGS.with(|c| c.insert(&binding, config));
        Ok(())
    }

    fn route(binding: String, alert: Alert, channels: Vec<String>) -> Result<Vec<String>, String> {
        let config = CONFIGS.with(|c| c.get(&binding))?;
        Ok(select(config.for_severity(alert.severity), &channels))
    }
}

export!(SeverityRouter);

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_and_star() {
        let config = Config::parse("{}").unwrap();
        let rule = strings(&["email", "websocket", "log", "email"]);
        assert_eq!(
            select(config.for_severity(Severity::High), &rule),
            ["email", "websocket", "log"]
        );
        assert_eq!(
            select(config.for_severity(Severity::Low), &rule),
            ["websocket", "log"]
        );
        assert!(select(config.for_severity(Severity::Medium), &strings(&["email"])).is_empty());
    }

    #[test]
    fn override_and_errors() {
        let config = Config::parse(r#"{"low":["log"],"channels":["email","log"]}"#).unwrap();
        let rule = strings(&["log", "websocket", "email"]);
        assert_eq!(
            select(config.for_severity(Severity::Low), &rule),
            ["log", "email"]
        );
        assert!(Config::parse(r#"{"hihg":["*"]}"#)
            .unwrap_err()
            .contains(r#"unknown key "hihg""#));
        assert!(Config::parse(r#"{"high":"email"}"#).is_ok());
        assert!(Config::parse(r#"{"high":[1]}"#)
            .unwrap_err()
            .contains("\"high\""));
    }
}
