//! `feishu`: post alerts to a Feishu (飞书) / Lark custom bot, as an
//! interactive card or as rich text.
//!
//! ```toml
//! [[channels]]
//! plugin = "feishu"
//! config = { url = "https://open.feishu.cn/open-apis/bot/v2/hook/...", secret = "..." }
//! grants = { http = ["open.feishu.cn"] }          # Lark: open.larksuite.com
//! # optional: format = "card" (default) | "post"
//! ```
//!
//! Bodies:
//!
//! * `card`: `{"msg_type": "interactive", "card": {"header": {"title":
//!   {"tag": "plain_text", "content": headline}, "template": "red"},
//!   "elements": [{"tag": "markdown", "content": ...}]}}`; the header's
//!   colour follows the severity (red, orange, yellow, blue);
//! * `post`: `{"msg_type": "post", "content": {"post": {"zh_cn": {"title":
//!   headline, "content": [[{"tag": "text", "text": ...}], ...]}}}}`, one
//!   paragraph per line.
//!
//! **Signing.** With `secret` (the bot's "签名校验" setting) the body also
//! has `"timestamp"` (seconds, as text) and `"sign"` =
//! `base64(HMAC-SHA256(key = timestamp + "\n" + secret, message = ""))`, as
//! Feishu documents it. A plugin has no clock, so the timestamp is the
//! alert's last-seen time; Feishu accepts one within an hour of its own
//! clock, so a delivery retried or replayed later than that is refused.

use serde_json::{json, Value};
use tocsin_plugin_sdk::chat::{JsonChannel, JsonRequest, Markdown, Notice};
use tocsin_plugin_sdk::sign::hmac_sha256_base64;
use tocsin_plugin_sdk::Table;

/// Which Feishu message type to send.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Card,
    Post,
}

/// Settings of one binding.
#[derive(Debug)]
struct Feishu {
    url: String,
    secret: Option<String>,
    format: Format,
}

/// The interactive card: coloured header, Markdown body.
fn card(alert: &Notice) -> Value {
    json!({
        "msg_type": "interactive",
        "card": {
            "config": { "wide_screen_mode": true },
            "header": {
                "title": { "tag": "plain_text", "content": alert.headline() },
                "template": alert.severity.pick(["red", "orange", "yellow", "blue"]),
            },
            "elements": [{ "tag": "markdown", "content": alert.markdown(Markdown::CARD_BODY) }],
        },
    })
}

/// Rich text: the summary, the facts and the samples, one paragraph each.
fn post(alert: &Notice) -> Value {
    let mut lines = vec![alert.summary.clone()];
    lines.extend(
        alert
            .facts()
            .into_iter()
            .map(|(name, value)| format!("{name}: {value}")),
    );
    let samples = alert.sample_lines();
    if !samples.is_empty() {
        lines.push("Samples:".to_string());
        lines.extend(
            samples
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{}. {s}", i + 1)),
        );
    }
    let content: Vec<Value> = lines
        .into_iter()
        .map(|line| json!([{ "tag": "text", "text": line }]))
        .collect();
    json!({
        "msg_type": "post",
        "content": { "post": { "zh_cn": { "title": alert.headline(), "content": content } } },
    })
}

impl JsonChannel for Feishu {
    const NAME: &'static str = "feishu";

    fn configure(t: &mut Table) -> Result<Self, String> {
        let url = t.required_url("url", "https://open.feishu.cn/open-apis/bot/v2/hook/...")?;
        let secret = t.non_empty_string("secret")?;
        let format = match t.choice("format", &["card", "post"])? {
            Some("post") => Format::Post,
            _ => Format::Card,
        };
        Ok(Feishu {
            url,
            secret,
            format,
        })
    }

    fn render(&self, alert: &Notice) -> Result<JsonRequest, String> {
        let mut body = match self.format {
            Format::Card => card(alert),
            Format::Post => post(alert),
        };
        if let Some(secret) = &self.secret {
            let timestamp = alert.last_seen.div_euclid(1000).to_string();
            let key = format!("{timestamp}\n{secret}");
            body["sign"] = Value::String(hmac_sha256_base64(key.as_bytes(), b""));
            body["timestamp"] = Value::String(timestamp);
        }
        Ok(JsonRequest::post(&self.url, body))
    }
}

tocsin_plugin_sdk::export_channel!(Feishu);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::chat::configure;

    #[test]
    fn card_with_signature() {
        let f: Feishu =
            configure(r#"{"url":"https://open.feishu.cn/x","secret":"secret"}"#).unwrap();
        let b = f.render(&Notice::example()).unwrap().body;
        assert_eq!(b["msg_type"], "interactive");
        assert_eq!(b["card"]["header"]["template"], "red");
        assert_eq!(
            b["card"]["header"]["title"]["content"],
            "🚨 [CRITICAL] DEVICE_START_FAILED x3 on device-service"
        );
        assert_eq!(b["card"]["elements"][0]["tag"], "markdown");
        assert_eq!(b["timestamp"], "1714566900");
        // base64(hmac.new(b"1714566900\nsecret", b"", sha256).digest()), by Python.
        assert_eq!(b["sign"], "9cZLWGNS/lmd2DNDeEMRG1MaRagf38Tc2kNJ+3MLhVA=");
    }

    #[test]
    fn post_without_signature() {
        let f: Feishu = configure(r#"{"url":"https://h/x","format":"post"}"#).unwrap();
        let b = f.render(&Notice::example()).unwrap().body;
        assert_eq!(b["msg_type"], "post");
        let post = &b["content"]["post"]["zh_cn"];
        assert!(post["title"]
            .as_str()
            .unwrap()
            .contains("DEVICE_START_FAILED x3"));
        assert_eq!(post["content"][2][0]["text"], "Count: 3");
        assert_eq!(post["content"][8][0]["text"], "1. boot timeout on pod-1");
        assert!(b.get("sign").is_none() && b.get("timestamp").is_none());
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |json: &str| configure::<Feishu>(json).unwrap_err();
        assert!(err("{}").starts_with(r#"feishu: "url": required"#));
        assert!(err(r#"{"url":"https://h/x","format":"text"}"#)
            .starts_with(r#"feishu: "format": unknown format "text""#));
    }
}
