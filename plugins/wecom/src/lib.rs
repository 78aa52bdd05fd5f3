//! `wecom`: post alerts to a WeCom (企业微信) group robot, as Markdown.
//!
//! ```toml
//! [[channels]]
//! plugin = "wecom"
//! config = { url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...", mentioned-list = ["zhangsan"] }
//! grants = { http = ["qyapi.weixin.qq.com"] }
//! ```
//!
//! Body: `{"msgtype": "markdown", "markdown": {"content": ...}}`. WeCom's
//! Markdown messages have no `mentioned_list` field: members are mentioned
//! in the text as `<@userid>`, so each `mentioned-list` entry (a WeCom user
//! id) is appended that way. Markdown messages cannot mention everyone
//! (`@all` works only in text messages), so `@all` is refused. The content
//! is cut to WeCom's limit of 4096 bytes.

use serde_json::json;
use tocsin_plugin_sdk::chat::{truncate_bytes, JsonChannel, JsonRequest, Markdown, Notice};
use tocsin_plugin_sdk::Table;

/// WeCom's limit on a Markdown message's content, in bytes of UTF-8.
const CONTENT_BYTES: usize = 4096;

/// Settings of one binding.
#[derive(Debug)]
struct WeCom {
    url: String,
    /// `<@id> <@id>`, or empty.
    mentions: String,
}

impl JsonChannel for WeCom {
    const NAME: &'static str = "wecom";

    fn configure(t: &mut Table) -> Result<Self, String> {
        let url = t.required_url(
            "url",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...",
        )?;
        let ids = t.strings("mentioned-list")?.unwrap_or_default();
        for id in &ids {
            if id == "@all" {
                return Err(t.error(
                    "mentioned-list",
                    "\"@all\" is not possible in a WeCom Markdown message (list user ids)",
                ));
            }
            if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c == '<' || c == '>') {
                return Err(t.error(
                    "mentioned-list",
                    format!("\"{id}\" is not a WeCom user id (e.g. \"zhangsan\")"),
                ));
            }
        }
        let mentions: Vec<String> = ids.iter().map(|id| format!("<@{id}>")).collect();
        Ok(WeCom {
            url,
            mentions: mentions.join(" "),
        })
    }

    fn render(&self, alert: &Notice) -> Result<JsonRequest, String> {
        let markdown = alert.markdown(Markdown::MESSAGE);
        let content = if self.mentions.is_empty() {
            truncate_bytes(&markdown, CONTENT_BYTES)
        } else {
            let room = CONTENT_BYTES.saturating_sub(self.mentions.len() + 2);
            format!("{}\n\n{}", truncate_bytes(&markdown, room), self.mentions)
        };
        let body = json!({ "msgtype": "markdown", "markdown": { "content": content } });
        Ok(JsonRequest::post(&self.url, body))
    }
}

tocsin_plugin_sdk::export_channel!(WeCom);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::chat::configure;

    #[test]
    fn payload() {
        let w: WeCom =
            configure(r#"{"url":"https://h/send?key=k","mentioned_list":["alice","bob"]}"#)
                .unwrap();
        let mut alert = Notice::example();
        let r = w.render(&alert).unwrap();
        assert_eq!(r.body["msgtype"], "markdown");
        let content = r.body["markdown"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("### 🚨 [CRITICAL] DEVICE_START_FAILED x3"),
            "{content}"
        );
        assert!(content.ends_with("\n\n<@alice> <@bob>"), "{content}");

        alert.summary = "长".repeat(3000);
        let r = w.render(&alert).unwrap();
        let content = r.body["markdown"]["content"].as_str().unwrap();
        assert!(content.len() <= CONTENT_BYTES, "{}", content.len());
        assert!(content.ends_with("<@bob>"));
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |json: &str| configure::<WeCom>(json).unwrap_err();
        assert!(err("{}").starts_with(r#"wecom: "url": required"#));
        assert!(err(r#"{"url":"https://h/x","mentioned-list":["@all"]}"#)
            .starts_with(r#"wecom: "mentioned-list": "@all""#));
        assert!(err(r#"{"url":"https://h/x","mentioned-list":[1]}"#)
            .starts_with(r#"wecom: "mentioned-list": item 1 must be a string"#));
    }
}
