//! `teams`: post alerts to a Microsoft Teams incoming webhook, as an
//! Adaptive Card (the default) or as a legacy MessageCard.
//!
//! ```toml
//! [[channels]]
//! plugin = "teams"
//! config = { url = "https://example.webhook.office.com/webhookb2/...", format = "adaptive-card" }
//! grants = { http = ["*.webhook.office.com"] }   # Workflows webhooks: "*.logic.azure.com"
//! ```
//!
//! Bodies:
//!
//! * `adaptive-card`: `{"type": "message", "attachments": [{"contentType":
//!   "application/vnd.microsoft.card.adaptive", "content": {"type":
//!   "AdaptiveCard", "version": "1.4", "body": [TextBlock headline (coloured
//!   by severity), TextBlock summary, FactSet, samples]}}]}`, the shape both
//!   the Office 365 connectors and Workflows (Power Automate) webhooks take;
//! * `message-card`: `{"@type": "MessageCard", "@context":
//!   "https://schema.org/extensions", "themeColor": "D32F2F", "summary",
//!   "title", "sections": [{"text", "facts": [{"name", "value"}]}, ...]}` for
//!   the Office 365 connector webhooks.

use serde_json::{json, Value};
use tocsin_plugin_sdk::chat::{JsonChannel, JsonRequest, Notice};
use tocsin_plugin_sdk::Table;

/// Which card to send.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    AdaptiveCard,
    MessageCard,
}

/// Settings of one binding.
#[derive(Debug)]
struct Teams {
    url: String,
    format: Format,
}

/// `1. first`, `2. second`... one per sample.
fn numbered(alert: &Notice) -> Vec<String> {
    alert
        .sample_lines()
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect()
}

fn adaptive_card(alert: &Notice) -> Value {
    let facts: Vec<Value> = alert
        .facts()
        .into_iter()
        .map(|(title, value)| json!({ "title": title, "value": value }))
        .collect();
    let mut body = vec![
        json!({
            "type": "TextBlock", "text": alert.headline(), "wrap": true, "style": "heading",
            "size": "Medium", "weight": "Bolder",
            "color": alert.severity.pick(["Attention", "Warning", "Accent", "Default"]),
        }),
        json!({ "type": "TextBlock", "text": alert.summary, "wrap": true }),
        json!({ "type": "FactSet", "facts": facts }),
    ];
    let samples = numbered(alert);
    if !samples.is_empty() {
        body.push(
            json!({ "type": "TextBlock", "text": "Samples", "weight": "Bolder", "wrap": true }),
        );
        body.extend(samples.into_iter().map(|s| {
            json!({ "type": "TextBlock", "text": s, "wrap": true, "spacing": "None", "fontType": "Monospace" })
        }));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "msteams": { "width": "Full" },
            },
        }],
    })
}

fn message_card(alert: &Notice) -> Value {
    let facts: Vec<Value> = alert
        .facts()
        .into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let mut sections = vec![json!({ "text": alert.summary, "facts": facts })];
    let samples = numbered(alert);
    if !samples.is_empty() {
        sections.push(json!({ "title": "Samples", "text": samples.join("\n\n") }));
    }
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "themeColor": alert.severity.colour(),
        "summary": alert.headline(),
        "title": alert.headline(),
        "sections": sections,
    })
}

impl JsonChannel for Teams {
    const NAME: &'static str = "teams";

    fn configure(t: &mut Table) -> Result<Self, String> {
        let url = t.required_url("url", "https://example.webhook.office.com/webhookb2/...")?;
        let format = match t.choice("format", &["adaptive-card", "message-card"])? {
            Some("message-card") => Format::MessageCard,
            _ => Format::AdaptiveCard,
        };
        Ok(Teams { url, format })
    }

    fn render(&self, alert: &Notice) -> Result<JsonRequest, String> {
        let body = match self.format {
            Format::AdaptiveCard => adaptive_card(alert),
            Format::MessageCard => message_card(alert),
        };
        Ok(JsonRequest::post(&self.url, body))
    }
}

tocsin_plugin_sdk::export_channel!(Teams);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::chat::configure;

    #[test]
    fn adaptive_card_by_default() {
        let t: Teams = configure(r#"{"url":"https://x.webhook.office.com/w"}"#).unwrap();
        let b = t.render(&Notice::example()).unwrap().body;
        assert_eq!(b["type"], "message");
        let a = &b["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert_eq!(a["content"]["body"][0]["color"], "Attention");
        assert_eq!(
            a["content"]["body"][2]["facts"][1],
            json!({"title": "Count", "value": "3"})
        );
        assert_eq!(a["content"]["body"][4]["text"], "1. boot timeout on pod-1");
    }

    #[test]
    fn message_card() {
        let t: Teams = configure(r#"{"url":"https://h/w","format":"message-card"}"#).unwrap();
        let b = t.render(&Notice::example()).unwrap().body;
        assert_eq!(b["@type"], "MessageCard");
        assert_eq!(b["themeColor"], "D32F2F");
        assert_eq!(
            b["sections"][0]["facts"][0],
            json!({"name": "Severity", "value": "critical"})
        );
        assert_eq!(b["sections"][1]["title"], "Samples");
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |json: &str| configure::<Teams>(json).unwrap_err();
        assert!(err("{}").starts_with(r#"teams: "url": required"#));
        assert!(err(r#"{"url":"https://h/x","format":"card"}"#)
            .starts_with(r#"teams: "format": unknown format "card""#));
    }
}
