//! `webhook`: send alerts as JSON to an HTTP endpoint.
//!
//! The plugin only renders the request; the host checks the URL's host
//! against the rule's `grants.http`, then sends it (with retries) after the
//! call returned.
//!
//! ```toml
//! [[channels]]
//! plugin = "webhook"
//! config = { url = "https://hooks.example.com/tocsin" }  # required
//! # optional: method = "POST" (default), headers = { Authorization = "Bearer ..." }
//! grants = { http = ["hooks.example.com"] }
//! ```
//!
//! Body: the WebSocket message shape plus `"version": "1"` and `"status"`
//! (`firing`, or `resolved` for a resolution, like Alertmanager), sent with
//! `content-type: application/json` unless `headers` sets another.

use serde_json::{json, Value};
use tocsin_plugin_sdk::chat::{JsonChannel, JsonRequest, Notice};
use tocsin_plugin_sdk::Table;

/// Settings of one binding, validated so a bad URL or header is reported by
/// `tocsin check` rather than at the first alert.
#[derive(Debug)]
struct Webhook {
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

/// The request body: the WebSocket message plus a format version, so
/// receivers can detect a future change of shape.
fn body(alert: &Notice) -> Value {
    json!({
        "version": "1",
        "type": alert.kind(),
        "status": if alert.resolved() { "resolved" } else { "firing" },
        "rule": alert.rule,
        "key": alert.key,
        "count": alert.count,
        "severity": alert.severity.name(),
        "title": alert.title,
        "summary": alert.summary,
        "samples": alert.samples,
        "labels": alert.labels_json(),
        "firstSeen": alert.first_seen,
        "lastSeen": alert.last_seen,
    })
}

impl JsonChannel for Webhook {
    const NAME: &'static str = "webhook";

    fn configure(t: &mut Table) -> Result<Self, String> {
        let url = t.required_url("url", "https://hooks.example.com/tocsin")?;
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
        Ok(Webhook {
            url,
            method,
            headers,
        })
    }

    fn render(&self, alert: &Notice) -> Result<JsonRequest, String> {
        Ok(JsonRequest {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: body(alert),
        })
    }
}

tocsin_plugin_sdk::export_channel!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::chat::configure;

    #[test]
    fn config_validation() {
        let c: Webhook =
            configure(r#"{"url":"https://h.example/x","method":"put","headers":{"X-Token":"t"}}"#)
                .unwrap();
        assert_eq!(c.method, "PUT");
        assert_eq!(
            c.headers,
            [
                ("X-Token".to_string(), "t".to_string()),
                ("content-type".to_string(), "application/json".to_string())
            ]
        );
        let err = |json: &str| configure::<Webhook>(json).unwrap_err();
        assert!(err("{}").starts_with(r#"webhook: "url": required"#));
        assert!(err(r#"{"url":"ftp://x"}"#).contains("must start with http:// or https://"));
        assert!(err(r#"{"url":"https://"}"#).contains("no host"));
        assert!(err(r#"{"url":"http://x","headers":{"a b":"c"}}"#).contains("\"a b\""));
        assert!(err(r#"{"url":"http://x","headers":{"a":"c\nd"}}"#).contains("line break"));
        assert!(err(r#"{"url":"http://x","method":"GET /"}"#).contains("\"method\""));
    }

    #[test]
    fn body_is_the_stream_message_with_a_version() {
        let c: Webhook = configure(r#"{"url":"https://h.example/x"}"#).unwrap();
        let r = c.render(&Notice::example()).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.body["version"], "1");
        assert_eq!(r.body["severity"], "critical");
        assert_eq!(r.body["labels"]["service"], "device-service");
        assert_eq!(r.body["lastSeen"], 1_714_566_900_000_i64);
    }
}
