//! `webhook`: send alerts as JSON to an HTTP endpoint.
//!
//! The plugin only renders the request; the host checks the URL's host
//! against the rule's `grants.http`, then sends it (with retries) after the
//! call returned.
//!
//! ```toml
//! [[rules.device-start.channels]]
//! plugin = "webhook"
//! url = "https://hooks.example.com/tocsin"   # required
//! method = "POST"                            # default
//! headers = { Authorization = "Bearer ..." } # optional
//! ```
//!
//! Body: the WebSocket message shape plus `"version": "1"`, sent with
//! `content-type: application/json` unless `headers` sets another.

wit_bindgen::generate!({
    path: "../../wit",
    world: "channel",
});

use serde_json::{json, Map, Value};
use tocsin::plugin::http::{send, Request};
use tocsin::plugin::types::Severity;
use tocsin_plugin_support::{Registry, Table};

thread_local! {
    /// Configurations by binding (see [`Registry`]).
    static CONFIGS: Registry<Config> = const { Registry::new("webhook") };
}

/// Settings of one binding, validated so a bad URL or header is reported by
/// `tocsin check` rather than at the first alert.
#[derive(Debug)]
struct Config {
    url: String,
    method: String,
    /// Includes `content-type`.
    headers: Vec<(String, String)>,
}

/// Characters allowed in an HTTP token (method and header names, RFC 9110).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

impl Config {
    fn parse(json: &str) -> Result<Config, String> {
        let mut t = Table::parse("webhook", json)?;
        let url = t.string("url")?.ok_or_else(|| {
            t.error(
                "url",
                "required (e.g. \"https://hooks.example.com/tocsin\")",
            )
        })?;
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                t.error(
                    "url",
                    format!("\"{url}\" must start with http:// or https://"),
                )
            })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(t.error("url", format!("\"{url}\" has no host")));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(t.error("url", format!("\"{url}\" contains whitespace")));
        }
        let method = t.string("method")?.unwrap_or_else(|| "POST".to_string());
        if !method.chars().all(|c| c.is_ascii_alphabetic()) || method.is_empty() {
            return Err(t.error("method", format!("\"{method}\" is not an HTTP method")));
        }
        let method = method.to_ascii_uppercase();
        let mut headers = t.string_map("headers")?.unwrap_or_default();
        for (name, value) in &headers {
            if !is_token(name) {
                return Err(t.error("headers", format!("\"{name}\" is not a valid header name")));
            }
            if value.contains(['\r', '\n']) {
                return Err(t.error(
                    "headers",
                    format!("value of \"{name}\" contains a line break"),
                ));
            }
        }
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".to_string(), "application/json".to_string()));
        }
        t.finish()?;
        Ok(Config {
            url,
            method,
            headers,
        })
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

/// The request body: the WebSocket message plus a format version, so
/// receivers can detect a future change of shape.
fn body(alert: &Alert) -> Value {
    let labels: Map<String, Value> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "version": "1",
        "type": "alert",
        "rule": alert.rule,
        "key": alert.key,
        "count": alert.count,
        "severity": severity_name(alert.severity),
        "title": alert.title,
        "summary": alert.summary,
        "samples": alert.samples,
        "labels": labels,
        "firstSeen": alert.first_seen,
        "lastSeen": alert.last_seen,
    })
}

/// The component's exports.
struct Webhook;

impl Guest for Webhook {
    fn configure(binding: String, config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        CONFIGS.with(|c| c.insert(&binding, config));
        Ok(())
    }

    fn deliver(binding: String, alert: Alert) -> Result<(), String> {
        let config = CONFIGS.with(|c| c.get(&binding))?;
        let request = Request {
            method: config.method.clone(),
            url: config.url.clone(),
            headers: config.headers.clone(),
            body: body(&alert).to_string().into_bytes(),
        };
        send(&request).map_err(|e| format!("webhook: {e}"))
    }
}

export!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let c = Config::parse(
            r#"{"url":"https://h.example/x","method":"put","headers":{"X-Token":"t"}}"#,
        )
        .unwrap();
        assert_eq!(c.method, "PUT");
        assert_eq!(
            c.headers,
            [
                ("X-Token".to_string(), "t".to_string()),
                ("content-type".to_string(), "application/json".to_string())
            ]
        );
        let err = |json: &str| Config::parse(json).unwrap_err();
        assert!(err("{}").starts_with(r#"webhook: "url": required"#));
        assert!(err(r#"{"url":"ftp://x"}"#).contains("must start with http:// or https://"));
        assert!(err(r#"{"url":"https://"}"#).contains("no host"));
        assert!(err(r#"{"url":"http://x","headers":{"a b":"c"}}"#).contains("\"a b\""));
        assert!(err(r#"{"url":"http://x","headers":{"a":"c\nd"}}"#).contains("line break"));
        assert!(err(r#"{"url":"http://x","method":"GET /"}"#).contains("\"method\""));
    }
}
