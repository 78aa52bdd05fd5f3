//! `dingtalk`: post alerts to a DingTalk (钉钉) custom robot, as Markdown.
//!
//! ```toml
//! [[channels]]
//! plugin = "dingtalk"
//! config = { url = "https://oapi.dingtalk.com/robot/send?access_token=...", secret = "SEC..." }
//! grants = { http = ["oapi.dingtalk.com"] }
//! # optional: at-mobiles = ["13800000000"], at-all = true
//! ```
//!
//! Body: `{"msgtype": "markdown", "markdown": {"title": ..., "text": ...},
//! "at": {"atMobiles": [...], "isAtAll": false}}`. The mobiles are also
//! written at the end of the text, which DingTalk requires for the mention
//! to notify.
//!
//! **Signing.** With `secret` (the robot's "加签" security setting) the URL
//! gets `&timestamp=<ms>&sign=<sign>`, where sign is
//! `urlencode(base64(HMAC-SHA256(key = secret, timestamp + "\n" + secret)))`.
//! A plugin has no clock, so the timestamp is the alert's last-seen time
//! (when its last event arrived), which is normally seconds before the
//! request. DingTalk accepts a timestamp within one hour of its own clock:
//! a delivery still retrying (or replayed from the dead letters) more than
//! an hour after the alert is refused by DingTalk (`errcode` 310000).

use serde_json::json;
use tocsin_plugin_sdk::chat::{JsonChannel, JsonRequest, Markdown, Notice};
use tocsin_plugin_sdk::sign::{hmac_sha256_base64, query_escape};
use tocsin_plugin_sdk::Table;

/// Settings of one binding.
#[derive(Debug)]
struct DingTalk {
    url: String,
    secret: Option<String>,
    at_mobiles: Vec<String>,
    at_all: bool,
}

/// The `timestamp` and `sign` query parameters for `timestamp_ms`.
fn sign(secret: &str, timestamp_ms: i64) -> String {
    let signature = hmac_sha256_base64(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    );
    format!("timestamp={timestamp_ms}&sign={}", query_escape(&signature))
}

impl JsonChannel for DingTalk {
    const NAME: &'static str = "dingtalk";

    fn configure(t: &mut Table) -> Result<Self, String> {
        let url = t.required_url(
            "url",
            "https://oapi.dingtalk.com/robot/send?access_token=...",
        )?;
        let secret = t.non_empty_string("secret")?;
        let at_mobiles = t.strings("at-mobiles")?.unwrap_or_default();
        for mobile in &at_mobiles {
            let digits = mobile.strip_prefix('+').unwrap_or(mobile);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '-') {
                return Err(t.error(
                    "at-mobiles",
                    format!("\"{mobile}\" is not a mobile number (e.g. \"13800000000\")"),
                ));
            }
        }
        let at_all = t.bool("at-all")?.unwrap_or(false);
        Ok(DingTalk {
            url,
            secret,
            at_mobiles,
            at_all,
        })
    }

    fn render(&self, alert: &Notice) -> Result<JsonRequest, String> {
        let mut text = alert.markdown(Markdown::MESSAGE);
        if !self.at_mobiles.is_empty() {
            let mentions: Vec<String> = self.at_mobiles.iter().map(|m| format!("@{m}")).collect();
            text.push_str(&format!("\n\n{}", mentions.join(" ")));
        }
        let body = json!({
            "msgtype": "markdown",
            "markdown": { "title": alert.headline(), "text": text },
            "at": { "atMobiles": self.at_mobiles, "isAtAll": self.at_all },
        });
        let url = match &self.secret {
            None => self.url.clone(),
            Some(secret) => {
                let separator = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{separator}{}", self.url, sign(secret, alert.last_seen))
            }
        };
        Ok(JsonRequest::post(url, body))
    }
}

tocsin_plugin_sdk::export_channel!(DingTalk);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::chat::configure;

    #[test]
    fn payload_and_signature() {
        let d: DingTalk = configure(
            r#"{"url":"https://oapi.dingtalk.com/robot/send?access_token=t","secret":"SECabc","at-mobiles":["13800000000"]}"#,
        )
        .unwrap();
        let r = d.render(&Notice::example()).unwrap();
        assert_eq!(r.body["msgtype"], "markdown");
        assert_eq!(
            r.body["markdown"]["title"],
            "🚨 [CRITICAL] DEVICE_START_FAILED x3 on device-service"
        );
        let text = r.body["markdown"]["text"].as_str().unwrap();
        assert!(text.starts_with("### 🚨 [CRITICAL]"), "{text}");
        assert!(text.ends_with("\n\n@13800000000"), "{text}");
        assert_eq!(
            r.body["at"],
            json!({"atMobiles": ["13800000000"], "isAtAll": false})
        );
        // Expected value computed independently with Python's hmac module:
        // base64(hmac.new(b"SECabc", b"1714566900000\nSECabc", sha256).digest()).
        assert_eq!(
            r.url,
            "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1714566900000\
             &sign=QOp4vUQfg6FqhLBI%2F3VFGLoT8zoPlNCut7C5NN6fKQI%3D"
        );

        let d: DingTalk = configure(r#"{"url":"https://h/robot","at_all":true}"#).unwrap();
        let r = d.render(&Notice::example()).unwrap();
        assert_eq!(r.url, "https://h/robot");
        assert_eq!(r.body["at"]["isAtAll"], true);
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |json: &str| configure::<DingTalk>(json).unwrap_err();
        assert!(err("{}").starts_with(r#"dingtalk: "url": required"#));
        assert!(err(r#"{"url":"https://h/x","secret":" "}"#)
            .starts_with(r#"dingtalk: "secret": must not be empty"#));
        assert!(err(r#"{"url":"https://h/x","at-mobiles":["bob"]}"#)
            .starts_with(r#"dingtalk: "at-mobiles": "bob" is not a mobile number"#));
        assert!(err(r#"{"url":"https://h/x","at-all":"yes"}"#).starts_with(r#"dingtalk: "at-all""#));
    }
}
