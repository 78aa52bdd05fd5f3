//! `pagerduty`: trigger PagerDuty alerts through the Events API v2.
//!
//! ```toml
//! [[channels]]
//! plugin = "pagerduty"
//! config = { routing-key = "0123456789abcdef0123456789abcdef" }
//! grants = { http = ["events.pagerduty.com"] }
//! # optional: url = "https://events.eu.pagerduty.com/v2/enqueue" (EU service region),
//! #           source = "prod-eu-1" (default: the alert's service)
//! ```
//!
//! Body (an Events API v2 `trigger`):
//!
//! ```json
//! {"routing_key": "...", "event_action": "trigger", "client": "tocsin",
//!  "dedup_key": "<rule>/<alert key>",
//!  "payload": {"summary": "<title>", "source": "<service>", "severity": "critical",
//!              "timestamp": "<last seen, RFC 3339>", "component": "<service>",
//!              "group": "<rule>", "class": "<error code>",
//!              "custom_details": {"count": 3, "summary": "...", "samples": [...],
//!                                 "labels": {...}, "first_seen": "...", "last_seen": "..."}}}
//! ```
//!
//! The dedup key is the same for every alert of one rule and key, so
//! PagerDuty adds repeated alerts to the open incident instead of paging
//! again. Severities map critical → `critical`, high → `error`, medium →
//! `warning`, low → `info`.

use serde_json::{json, Map, Value};
use tocsin_plugin_sdk::chat::{truncate, truncate_bytes, JsonChannel, JsonRequest, Notice};
use tocsin_plugin_sdk::{rfc3339, Table};

/// The Events API v2 endpoint (US service region).
const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Limits of the Events API v2: `summary` characters, `dedup_key` bytes.
const SUMMARY_CHARS: usize = 1024;
const DEDUP_KEY_BYTES: usize = 255;

/// Settings of one binding.
#[derive(Debug)]
struct PagerDuty {
    url: String,
    routing_key: String,
    /// `None`: the alert's `service` label.
    source: Option<String>,
}

impl JsonChannel for PagerDuty {
    const NAME: &'static str = "pagerduty";

    fn configure(t: &mut Table) -> Result<Self, String> {
        let routing_key = t.required_string(
            "routing-key",
            "the 32-character integration key of an Events API v2 integration",
        )?;
        if routing_key.len() != 32 || !routing_key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(t.error(
                "routing-key",
                "expected the 32-character integration key of an Events API v2 integration \
                 (letters and digits)",
            ));
        }
        let url = t.url("url")?.unwrap_or_else(|| DEFAULT_URL.to_string());
        let source = t.non_empty_string("source")?;
        Ok(PagerDuty {
            url,
            routing_key,
            source,
        })
    }

    fn render(&self, alert: &Notice) -> Result<JsonRequest, String> {
        let service = alert.label("service");
        let source = self.source.as_deref().or(service).unwrap_or("tocsin");
        let mut payload = Map::new();
        let mut put = |key: &str, value: Value| {
            payload.insert(key.to_string(), value);
        };
        put("summary", truncate(&alert.title, SUMMARY_CHARS).into());
        put("source", source.into());
        put(
            "severity",
            alert
                .severity
                .pick(["critical", "error", "warning", "info"])
                .into(),
        );
        put("timestamp", rfc3339(alert.last_seen).into());
        if let Some(service) = service {
            put("component", service.into());
        }
        put("group", alert.rule.clone().into());
        if let Some(code) = alert.label("error-code") {
            put("class", code.into());
        }
        put(
            "custom_details",
            json!({
                "count": alert.count,
                "summary": alert.summary,
                "samples": alert.sample_lines(),
                "labels": alert.labels_json(),
                "key": alert.key,
                "first_seen": rfc3339(alert.first_seen),
                "last_seen": rfc3339(alert.last_seen),
            }),
        );
        let body = json!({
            "routing_key": self.routing_key,
            // A resolution closes the incident its alert opened (same key).
            "event_action": if alert.resolved() { "resolve" } else { "trigger" },
            "dedup_key": truncate_bytes(&format!("{}/{}", alert.rule, alert.key), DEDUP_KEY_BYTES),
            "client": "tocsin",
            "payload": payload,
        });
        Ok(JsonRequest::post(&self.url, body))
    }
}

tocsin_plugin_sdk::export_channel!(PagerDuty);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::chat::{configure, Severity};

    const KEY: &str = "0123456789abcdef0123456789ABCDEF";

    #[test]
    fn trigger_event() {
        let p: PagerDuty = configure(&format!(r#"{{"routing-key":"{KEY}"}}"#)).unwrap();
        let mut alert = Notice::example();
        let r = p.render(&alert).unwrap();
        assert_eq!(r.url, DEFAULT_URL);
        let b = &r.body;
        assert_eq!(b["routing_key"], KEY);
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(
            b["dedup_key"],
            "device-start-failed/DEVICE_START_FAILED|device-service"
        );
        let p = &b["payload"];
        assert_eq!(p["summary"], "DEVICE_START_FAILED x3 on device-service");
        assert_eq!(p["source"], "device-service");
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["timestamp"], "2024-05-01T12:35:00.000Z");
        assert_eq!(p["group"], "device-start-failed");
        assert_eq!(p["class"], "DEVICE_START_FAILED");
        assert_eq!(p["custom_details"]["count"], 3);
        assert_eq!(p["custom_details"]["labels"]["service"], "device-service");

        alert.severity = Severity::Medium;
        alert.labels.clear();
        let b = configure::<PagerDuty>(&format!(
            r#"{{"routing-key":"{KEY}","source":"host-1","url":"https://events.eu.pagerduty.com/v2/enqueue"}}"#
        ))
        .unwrap()
        .render(&alert)
        .unwrap();
        assert_eq!(b.url, "https://events.eu.pagerduty.com/v2/enqueue");
        assert_eq!(b.body["payload"]["severity"], "warning");
        assert_eq!(b.body["payload"]["source"], "host-1");
        assert!(b.body["payload"].get("class").is_none());
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |json: &str| configure::<PagerDuty>(json).unwrap_err();
        assert!(err("{}").starts_with(r#"pagerduty: "routing-key": required"#));
        assert!(err(r#"{"routing-key":"abc"}"#)
            .starts_with(r#"pagerduty: "routing-key": expected the 32-character"#));
        assert!(err(&format!(
            r#"{{"routing-key":"{KEY}","url":"events.pagerduty.com"}}"#
        ))
        .starts_with(r#"pagerduty: "url""#));
    }
}
