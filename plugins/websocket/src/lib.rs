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
//! [[rules.device-start.channels]]
//! plugin = "websocket"
//! include-samples = true   # default; false sends "samples": []
//! ```

wit_bindgen::generate!({
    path: "../../wit",
    world: "channel",
});

use serde_json::{json, Map, Value};
use tocsin::plugin::types::Severity;
use tocsin::plugin::websocket::broadcast;
use tocsin_plugin_support::channel::is_resolution;
use tocsin_plugin_support::{Registry, Table};

thread_local! {
    /// Configurations by binding (see [`Registry`]).
    static CONFIGS: Registry<Config> = const { Registry::new("websocket") };
}

/// Settings of one binding.
struct Config {
    /// Sample messages can be long or sensitive; dashboards open to many
    /// people may prefer to leave them out.
    include_samples: bool,
}

impl Config {
    fn parse(json: &str) -> Result<Config, String> {
        let mut t = Table::parse("websocket", json)?;
        let include_samples = t.bool("include-samples")?.unwrap_or(true);
        t.finish()?;
        Ok(Config { include_samples })
    }
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

/// The component's exports.
struct WebSocketChannel;

impl Guest for WebSocketChannel {
    fn configure(binding: String, config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        CONFIGS.with(|c| c.insert(&binding, config));
        Ok(())
    }

    fn deliver(binding: String, alert: Alert) -> Result<(), String> {
        let config = CONFIGS.with(|c| c.get(&binding))?;
        let body = message(&alert, config.include_samples).to_string();
        broadcast(&body).map_err(|e| format!("websocket: {e}"))
    }
}

export!(WebSocketChannel);
