//! `severity-router`: pick an alert's channels by its severity.
//!
//! Critical and high alerts reach people (every channel of the rule); medium
//! and low ones stay on the dashboard (`websocket`, `log`) unless configured
//! otherwise. `"*"` stands for all of the rule's channels; `channels`
//! overrides the per-severity lists.
//!
//! ```toml
//! [route]
//! plugin = "severity-router"
//! [route.config]
//! critical = ["*"]                 # default
//! high = ["*"]                     # default
//! medium = ["websocket", "log"]    # default
//! low = ["websocket", "log"]       # default
//! # channels = ["log"]             # always exactly these
//! ```

use tocsin_plugin_sdk::router::Severity;
use tocsin_plugin_sdk::router::{Alert, Router};
use tocsin_plugin_sdk::Table;

/// Channel names by severity (`"*"`: all of the rule's channels).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    critical: Vec<String>,
    high: Vec<String>,
    medium: Vec<String>,
    low: Vec<String>,
}

impl Config {
    fn read(t: &mut Table) -> Result<Config, String> {
        let all = || vec!["*".to_string()];
        let dashboard = || vec!["websocket".to_string(), "log".to_string()];
        let mut config = Config {
            critical: names(t, "critical")?.unwrap_or_else(all),
            high: names(t, "high")?.unwrap_or_else(all),
            medium: names(t, "medium")?.unwrap_or_else(dashboard),
            low: names(t, "low")?.unwrap_or_else(dashboard),
        };
        if let Some(always) = names(t, "channels")? {
            config = Config {
                critical: always.clone(),
                high: always.clone(),
                medium: always.clone(),
                low: always,
            };
        }
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

impl Router for Config {
    const NAME: &'static str = "severity-router";

    fn configure(config: &mut Table) -> Result<Self, String> {
        Config::read(config)
    }

    fn route(&self, alert: &Alert, channels: Vec<String>) -> Result<Vec<String>, String> {
        Ok(select(self.for_severity(alert.severity), &channels))
    }
}

tocsin_plugin_sdk::export_router!(Config);

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_and_star() {
        let config = Config::from_json("{}").unwrap();
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
        let config = Config::from_json(r#"{"low":["log"],"channels":["email","log"]}"#).unwrap();
        let rule = strings(&["log", "websocket", "email"]);
        assert_eq!(
            select(config.for_severity(Severity::Low), &rule),
            ["log", "email"]
        );
        assert!(Config::from_json(r#"{"hihg":["*"]}"#)
            .unwrap_err()
            .contains(r#"unknown key "hihg""#));
        assert!(Config::from_json(r#"{"high":"email"}"#).is_ok());
        assert!(Config::from_json(r#"{"high":[1]}"#)
            .unwrap_err()
            .contains("\"high\""));
    }
}
