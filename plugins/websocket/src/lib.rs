//! `websocket`: push alerts to the live stream (`GET /v1/ws`).
//!
//! Each alert becomes one JSON message with camelCase keys, the shape the
//! dashboard reads:
//!
//! ```json
//! {"type":"alert","rule":"device-start","key":"DEVICE_START_FAILED|device-service",
//!  "count":3,"severity":"high","title":"...","summary":"...","samples":["..."],
//!  "labels":{"error-code":"...","service":"..."},"firstSeen":1714566896789,"lastSeen":1714566900000,
//!  "status":"firing"}
//! ```
//!
//! A resolution (a resolved Prometheus or Alertmanager alert) has
//! `"type":"resolved"` and `"status":"resolved"`.
//!
//! ```toml
//! [[channels]]
//! plugin = "websocket"
//! grants = { websocket = true }
//! config = { include-samples = true }   # default; false sends "samples": []
//! ```

use serde_json::{json, Map, Value};
use tocsin_plugin_sdk::channel::{Alert, Channel, Severity};
use tocsin_plugin_sdk::chat::is_resolution;
use tocsin_plugin_sdk::websocket::broadcast;
use tocsin_plugin_sdk::Table;

/// Settings of one binding.
struct Config {
    /// Sample messages can be long or sensitive; dashboards open to many
    /// people may prefer to leave them out.
    include_samples: bool,
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
    }
}

/// The stream message for `alert`. The samples are always present (maybe
/// empty) so clients need not check for the key.
fn message(alert: &Alert, include_samples: bool) -> Value {
    let labels: Map<String, Value> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let samples: &[String] = if include_samples { &alert.samples } else { &[] };
    let resolved = is_resolution(&alert.labels);
    json!({
        "type": if resolved { "resolved" } else { "alert" },
        "status": if resolved { "resolved" } else { "firing" },
        "rule": alert.rule,
        "key": alert.key,
        "count": alert.count,
        "severity": severity_name(alert.severity),
        "title": alert.title,
        "summary": alert.summary,
        "samples": samples,
        "labels": labels,
        "firstSeen": alert.first_seen,
        "lastSeen": alert.last_seen,
    })
}

impl Channel for Config {
    const NAME: &'static str = "websocket";

    fn configure(t: &mut Table) -> Result<Self, String> {
        let include_samples = t.bool("include-samples")?.unwrap_or(true);
        Ok(Config { include_samples })
    }

    fn deliver(&self, alert: Alert) -> Result<(), String> {
        let body = message(&alert, self.include_samples).to_string();
        broadcast(&body).map_err(|e| format!("websocket: {e}"))
    }
}

tocsin_plugin_sdk::export_channel!(Config);
