//! `slack`: post alerts to a Slack incoming webhook, as Block Kit blocks.
//!
//! ```toml
//! [[channels]]
//! plugin = "slack"
//! config = { url = "https://hooks.slack.com/services/T000/B000/XXXX" }
//! grants = { http = ["hooks.slack.com"] }
//! # optional: channel = "#ops", username = "tocsin", icon-emoji = ":rotating_light:",
//! #           color = true (a bar in the severity's colour, through a legacy attachment)
//! ```
//!
//! Body (`content-type: application/json`):
//!
//! ```json
//! {"text": "🚨 [CRITICAL] DEVICE_START_FAILED x3 on device-service",
//!  "blocks": [
//!    {"type": "header", "text": {"type": "plain_text", "text": "🚨 [CRITICAL] ..."}},
//!    {"type": "section", "text": {"type": "mrkdwn", "text": "<summary>"}},
//!    {"type": "context", "elements": [{"type": "mrkdwn", "text": "*Count:* 3"}, ...]},
//!    {"type": "section", "text": {"type": "mrkdwn", "text": "*Samples*\n```...```"}}]}
//! ```
//!
//! `text` is the notification fallback. With `color = true` the blocks move
//! into `attachments[0]` with `"color": "#D32F2F"` (by severity). `channel`,
//! `username` and `icon-emoji` are only honoured by Slack's legacy webhooks;
//! an app's webhook posts to the channel it was created for.

use serde_json::{json, Map, Value};
use tocsin_plugin_sdk::chat::{truncate, JsonChannel, JsonRequest, Notice};
use tocsin_plugin_sdk::Table;

/// Block Kit limits: a header's text, and a section's or context element's.
const HEADER_CHARS: usize = 150;
const TEXT_CHARS: usize = 3000;

/// Settings of one binding.
#[derive(Debug)]
struct Slack {
    url: String,
    channel: Option<String>,
    username: Option<String>,
    icon_emoji: Option<String>,
    color: bool,
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn mrkdwn(text: &str) -> Value {
    json!({ "type": "mrkdwn", "text": truncate(text, TEXT_CHARS) })
}

impl JsonChannel for Slack {
    const NAME: &'static str = "slack";

    fn configure(t: &mut Table) -> Result<Self, String> {
        let url = t.required_url("url", "https://hooks.slack.com/services/T000/B000/XXXX")?;
        let channel = t.non_empty_string("channel")?;
        let username = t.non_empty_string("username")?;
        let icon_emoji = t.non_empty_string("icon-emoji")?;
        if let Some(icon) = &icon_emoji {
            let name = icon.strip_prefix(':').and_then(|s| s.strip_suffix(':'));
            if name.is_none_or(|n| n.is_empty() || n.contains(char::is_whitespace)) {
                return Err(t.error(
                    "icon-emoji",
                    format!("\"{icon}\" is not an emoji code (e.g. \":rotating_light:\")"),
                ));
            }
        }
        let color = t.bool("color")?.unwrap_or(false);
        Ok(Slack {
            url,
            channel,
            username,
            icon_emoji,
            color,
        })
    }

    fn render(&self, alert: &Notice) -> Result<JsonRequest, String> {
        let headline = alert.headline();
        let context: Vec<Value> = alert
            .facts()
            .into_iter()
            .map(|(name, value)| mrkdwn(&format!("*{name}:* {}", escape(&value))))
            .collect();
        let mut blocks = vec![
            json!({
                "type": "header",
                "text": { "type": "plain_text", "text": truncate(&headline, HEADER_CHARS), "emoji": true },
            }),
            json!({ "type": "section", "text": mrkdwn(&escape(&alert.summary)) }),
            json!({ "type": "context", "elements": context }),
        ];
        let samples = alert.sample_lines();
        if !samples.is_empty() {
            let text = format!("*Samples*\n```{}```", escape(&samples.join("\n")));
            blocks.push(json!({ "type": "section", "text": mrkdwn(&text) }));
        }
        let mut body = Map::new();
        body.insert("text".into(), Value::String(escape(&headline)));
        if self.color {
            let attachment =
                json!({ "color": format!("#{}", alert.severity.colour()), "blocks": blocks });
            body.insert("attachments".into(), json!([attachment]));
        } else {
            body.insert("blocks".into(), Value::Array(blocks));
        }
        for (key, value) in [
            ("channel", &self.channel),
            ("username", &self.username),
            ("icon_emoji", &self.icon_emoji),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), Value::String(value.clone()));
            }
        }
        Ok(JsonRequest::post(&self.url, Value::Object(body)))
    }
}

tocsin_plugin_sdk::export_channel!(Slack);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::chat::configure;

    #[test]
    fn payload() {
        let slack: Slack = configure(
            r##"{"url":"https://hooks.slack.com/services/x","channel":"#ops","icon_emoji":":fire:"}"##,
        )
        .unwrap();
        let r = slack.render(&Notice::example()).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "https://hooks.slack.com/services/x");
        let b = &r.body;
        assert_eq!(
            b["text"],
            "🚨 [CRITICAL] DEVICE_START_FAILED x3 on device-service"
        );
        assert_eq!(b["blocks"][0]["type"], "header");
        assert_eq!(b["blocks"][1]["text"]["type"], "mrkdwn");
        assert_eq!(b["blocks"][2]["elements"][1]["text"], "*Count:* 3");
        let samples = b["blocks"][3]["text"]["text"].as_str().unwrap();
        assert!(samples.contains("on &lt;pod-2&gt; &amp; co"), "{samples}");
        assert_eq!(b["channel"], "#ops");
        assert_eq!(b["icon_emoji"], ":fire:");
        assert!(b.get("username").is_none() && b.get("attachments").is_none());

        let slack: Slack = configure(r#"{"url":"https://h/x","color":true}"#).unwrap();
        let b = slack.render(&Notice::example()).unwrap().body;
        assert_eq!(b["attachments"][0]["color"], "#D32F2F");
        assert_eq!(b["attachments"][0]["blocks"][0]["type"], "header");
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |json: &str| configure::<Slack>(json).unwrap_err();
        assert!(err("{}").starts_with(r#"slack: "url": required"#));
        assert!(err(r#"{"url":"hooks.slack.com/x"}"#).contains("http:// or https://"));
        assert!(err(r#"{"url":"https://h/x","icon-emoji":"fire"}"#)
            .starts_with(r#"slack: "icon-emoji": "fire" is not an emoji code"#));
        assert!(err(r#"{"url":"https://h/x","channel":""}"#)
            .starts_with(r#"slack: "channel": must not be empty"#));
        assert!(err(r#"{"url":"https://h/x","colour":true}"#).contains(r#"unknown key "colour""#));
    }
}
