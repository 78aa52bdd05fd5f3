//! `{{name}}`: a channel. It renders an alert as one JSON frame on the live
//! WebSocket stream (`/v1/ws`). Channels do no I/O themselves: they hand
//! deliveries to host capabilities (`websocket`, `email`, `http`), each of
//! which the rule must grant.
//!
//! ```toml
//! [[channels]]
//! plugin = "{{name}}"
//! grants = { websocket = true }
//! config = { prefix = "[{{name}}]" }
//! ```

wit_bindgen::generate!({ path: "wit", world: "channel" });

use std::cell::RefCell;
use std::collections::HashMap;

use tocsin::plugin::websocket;

thread_local! {
    /// Title prefix by binding.
    static PREFIX: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// Reads a rule's configuration; says which field is wrong.
fn parse(config: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(config).map_err(|e| format!("config is not JSON: {e}"))?;
    match v.get("prefix") {
        None => Ok(String::new()),
        Some(p) => p
            .as_str()
            .map(str::to_string)
            .ok_or(format!("`prefix` must be a string, got {p}")),
    }
}

/// The frame for `alert`.
fn render(alert: &Alert, prefix: &str) -> String {
    let title = if prefix.is_empty() {
        alert.title.clone()
    } else {
        format!("{prefix} {}", alert.title)
    };
    serde_json::json!({
        "type": "alert",
        "rule": alert.rule,
        "key": alert.key,
        "count": alert.count,
        "title": title,
        "summary": alert.summary,
    })
    .to_string()
}

/// The component's exports.
struct Plugin;

impl Guest for Plugin {
    fn configure(binding: String, config: String) -> Result<(), String> {
        let prefix = parse(&config)?;
        PREFIX.with(|m| m.borrow_mut().insert(binding, prefix));
        Ok(())
    }

    fn deliver(binding: String, alert: Alert) -> Result<(), String> {
        let prefix = PREFIX
            .with(|m| m.borrow().get(&binding).cloned())
            .ok_or(format!("binding `{binding}` is not configured"))?;
        websocket::broadcast(&render(&alert, &prefix))
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin::plugin::types::Severity;

    #[test]
    fn the_frame_carries_the_prefixed_title() {
        let alert = Alert {
            key: "K|s".into(),
            rule: "r".into(),
            count: 2,
            first_seen: 0,
            last_seen: 0,
            severity: Severity::High,
            title: "K on s".into(),
            summary: "two".into(),
            samples: vec![],
            labels: vec![],
        };
        let frame: serde_json::Value = serde_json::from_str(&render(&alert, "[x]")).unwrap();
        assert_eq!(frame["title"], "[x] K on s");
        assert_eq!(frame["count"], 2);
    }
}
