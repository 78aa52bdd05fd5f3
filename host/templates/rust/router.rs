//! `{{name}}`: a router. It picks the channels an alert goes to: every
//! channel for critical and high alerts, only `websocket` otherwise
//! (configurable: `quiet` lists the channels for medium and low).
//!
//! ```toml
//! [route]
//! plugin = "{{name}}"
//! config = { quiet = ["websocket"] }
//! ```

wit_bindgen::generate!({ path: "wit", world: "router" });

use std::cell::RefCell;
use std::collections::HashMap;

use tocsin::plugin::types::Severity;

thread_local! {
    /// Channels for medium and low alerts, by binding.
    static QUIET: RefCell<HashMap<String, Vec<String>>> = RefCell::new(HashMap::new());
}

/// Reads a rule's configuration; says which field is wrong.
fn parse(config: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(config).map_err(|e| format!("config is not JSON: {e}"))?;
    match v.get("quiet") {
        None => Ok(vec!["websocket".into()]),
        Some(list) => serde_json::from_value(list.clone())
            .map_err(|_| format!("`quiet` must be a list of channel names, got {list}")),
    }
}

/// The channels among `channels` that `alert` goes to.
fn pick(alert: &Alert, channels: &[String], quiet: &[String]) -> Vec<String> {
    match alert.severity {
        Severity::Critical | Severity::High => channels.to_vec(),
        Severity::Medium | Severity::Low => channels
            .iter()
            .filter(|c| quiet.contains(c))
            .cloned()
            .collect(),
    }
}

/// The component's exports.
struct Plugin;

impl Guest for Plugin {
    fn configure(binding: String, config: String) -> Result<(), String> {
        let quiet = parse(&config)?;
        QUIET.with(|m| m.borrow_mut().insert(binding, quiet));
        Ok(())
    }

    fn route(binding: String, alert: Alert, channels: Vec<String>) -> Result<Vec<String>, String> {
        let quiet = QUIET
            .with(|m| m.borrow().get(&binding).cloned())
            .ok_or(format!("binding `{binding}` is not configured"))?;
        Ok(pick(&alert, &channels, &quiet))
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(severity: Severity) -> Alert {
        Alert {
            key: "K|s".into(),
            rule: "r".into(),
            count: 1,
            first_seen: 0,
            last_seen: 0,
            severity,
            title: "t".into(),
            summary: "s".into(),
            samples: vec![],
            labels: vec![],
        }
    }

    #[test]
    fn loud_alerts_go_everywhere_quiet_ones_to_the_dashboard() {
        let all = vec!["websocket".to_string(), "email".to_string()];
        let quiet = parse("{}").unwrap();
        assert_eq!(pick(&alert(Severity::High), &all, &quiet), all);
        assert_eq!(pick(&alert(Severity::Low), &all, &quiet), vec!["websocket"]);
    }
}
