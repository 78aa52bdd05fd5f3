//! `{{name}}`: an aggregator. It alerts once `threshold` events with the
//! same error code and service arrive within `window` (ms), using the
//! host's windowed counter, so counts survive swaps, traps and restarts.
//!
//! Configured per rule (the rule's `[aggregate] config` table arrives here
//! as JSON, one `configure` per rule that uses the plugin):
//!
//! ```toml
//! [aggregate]
//! plugin = "{{name}}"
//! config = { threshold = 3, window_ms = 60000 }
//! ```

wit_bindgen::generate!({ path: "wit", world: "aggregator" });

use std::cell::RefCell;
use std::collections::HashMap;

use tocsin::plugin::log::{log, Level};
use tocsin::plugin::state;

/// One rule's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Settings {
    threshold: u64,
    window_ms: u64,
}

thread_local! {
    /// Settings by binding: every rule using this plugin has its own.
    static SETTINGS: RefCell<HashMap<String, Settings>> = RefCell::new(HashMap::new());
}

/// Reads a rule's configuration; says which field is wrong.
fn parse(config: &str) -> Result<Settings, String> {
    let v: serde_json::Value =
        serde_json::from_str(config).map_err(|e| format!("config is not JSON: {e}"))?;
    let number = |field: &str, default: u64| -> Result<u64, String> {
        match v.get(field) {
            None => Ok(default),
            Some(n) => n
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or(format!("`{field}` must be a positive integer, got {n}")),
        }
    };
    Ok(Settings {
        threshold: number("threshold", 3)?,
        window_ms: number("window_ms", 60_000)?,
    })
}

/// The group an event counts in.
fn key(e: &ErrorEvent) -> String {
    format!("{}|{}", e.error_code, e.service_name)
}

/// The alert for the event that made its group reach the threshold.
fn alert(e: &ErrorEvent, s: Settings, window_start: i64) -> Alert {
    Alert {
        key: key(e),
        rule: String::new(),
        count: s.threshold,
        first_seen: window_start,
        last_seen: e.received_at,
        severity: e.severity,
        title: format!("{} on {}", e.error_code, e.service_name),
        summary: format!(
            "{} events within {} s: {}",
            s.threshold,
            s.window_ms / 1000,
            e.message
        ),
        samples: vec![e.message.clone()],
        labels: vec![
            ("error-code".into(), e.error_code.clone()),
            ("service".into(), e.service_name.clone()),
        ],
    }
}

/// The component's exports.
struct Plugin;

impl Guest for Plugin {
    fn configure(binding: String, config: String) -> Result<(), String> {
        let settings = parse(&config)?;
        SETTINGS.with(|m| m.borrow_mut().insert(binding, settings));
        Ok(())
    }

    fn aggregate(binding: String, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
        let s = SETTINGS
            .with(|m| m.borrow().get(&binding).copied())
            .ok_or(format!("binding `{binding}` is not configured"))?;
        let mut alerts = Vec::new();
        for e in &events {
            let hit = state::window_add(&key(e), 1, e.received_at, s.window_ms, s.threshold);
            if hit.fires > 0 {
                log(Level::Info, &format!("{} reached {}", key(e), s.threshold));
                alerts.push(alert(e, s, hit.window_start));
            }
        }
        Ok(alerts)
    }
}

export!(Plugin);

// Native unit tests of the plugin's own logic: `cargo test`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        let s = parse("{}").unwrap();
        assert_eq!((s.threshold, s.window_ms), (3, 60_000));
        assert_eq!(parse(r#"{"threshold": 5}"#).unwrap().threshold, 5);
        let e = parse(r#"{"threshold": 0}"#).unwrap_err();
        assert!(e.contains("threshold"), "{e}");
    }
}
