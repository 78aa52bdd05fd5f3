//! What the channel plugins that post JSON share: `webhook` and the chat and
//! incident tools (`slack`, `dingtalk`, `feishu`, `wecom`, `teams`,
//! `pagerduty`).
//!
//! * [`Notice`]: the WIT `alert` record as plain Rust (each plugin's
//!   generated bindings have their own `Alert` type, so shared code cannot
//!   take that one), with the renderings every vendor payload is built from:
//!   [`Notice::headline`], [`Notice::facts`], [`Notice::sample_lines`],
//!   [`Notice::markdown`];
//! * [`Severity`]: the severity with its colour and emoji;
//! * [`JsonChannel`]: a plugin implements `configure` (read its [`Table`])
//!   and `render` (alert → [`JsonRequest`]); every `JsonChannel` is a
//!   [`Channel`](crate::channel::Channel), exported with
//!   [`export_channel!`](crate::export_channel).
//!
//! Vendors limit the sizes of texts (Slack's header is 150 characters, a
//! WeCom message 4096 bytes...), so long samples are cut here once
//! ([`SAMPLE_CHARS`]) and payload-specific limits with [`truncate`] and
//! [`truncate_bytes`].

use serde_json::{Map, Value};

use crate::{rfc3339, Table};

/// Longest sample message shown, in characters; longer ones end with `…`.
pub const SAMPLE_CHARS: usize = 300;

/// How bad an alert is: the WIT `severity` enum as plain Rust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    /// One of four values by severity, in the order critical, high, medium,
    /// low: every vendor mapping (colour names, PagerDuty levels) is one call.
    pub fn pick<T>(self, [critical, high, medium, low]: [T; 4]) -> T {
        match self {
            Severity::Critical => critical,
            Severity::High => high,
            Severity::Medium => medium,
            Severity::Low => low,
        }
    }

    /// The WIT name: `critical`, `high`, `medium`, `low`.
    pub fn name(self) -> &'static str {
        self.pick(["critical", "high", "medium", "low"])
    }

    /// An emoji that works in every chat tool (Unicode, not `:shortcodes:`).
    pub fn emoji(self) -> &'static str {
        self.pick(["🚨", "🔴", "🟠", "🔵"])
    }

    /// An RGB colour as six hex digits without `#` (red, orange, amber, blue).
    pub fn colour(self) -> &'static str {
        self.pick(["D32F2F", "F57C00", "FBC02D", "1976D2"])
    }
}

/// An alert as channel plugins render it (the WIT `alert` record).
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub key: String,
    pub rule: String,
    pub count: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub severity: Severity,
    pub title: String,
    pub summary: String,
    pub samples: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// Whether `labels` mark a resolution (`status` = `resolved`); for plugins
/// that render the WIT `alert` record without a [`Notice`].
pub fn is_resolution(labels: &[(String, String)]) -> bool {
    labels.iter().any(|(k, v)| k == "status" && v == "resolved")
}

/// A Markdown dialect: what differs between the chat tools that take
/// Markdown (DingTalk, WeCom, Feishu cards, Teams).
#[derive(Clone, Copy, Debug)]
pub struct Markdown {
    /// Start with the headline as a heading with this prefix (`"### "`);
    /// `None` when the message shows the headline elsewhere (a card header).
    pub heading: Option<&'static str>,
    /// The bold marker (`**`).
    pub bold: &'static str,
}

impl Markdown {
    /// A complete message: heading, summary, facts, samples.
    pub const MESSAGE: Markdown = Markdown {
        heading: Some("### "),
        bold: "**",
    };
    /// The body of a card whose header already shows the headline.
    pub const CARD_BODY: Markdown = Markdown {
        heading: None,
        bold: "**",
    };
}

impl Notice {
    /// `🚨 [CRITICAL] DEVICE_START_FAILED x3 on device-service`: what a
    /// notification preview or a card title shows; a resolution reads
    /// `✅ [RESOLVED] DEVICE_START_FAILED on device-service resolved`.
    pub fn headline(&self) -> String {
        if self.resolved() {
            return format!("✅ [RESOLVED] {}", self.title);
        }
        format!(
            "{} [{}] {}",
            self.severity.emoji(),
            self.severity.name().to_ascii_uppercase(),
            self.title
        )
    }

    /// Whether the alert is a resolution: the host marks one with the
    /// label `status` = `resolved` (a resolved Prometheus or Alertmanager
    /// alert, see the WIT `alert` record).
    pub fn resolved(&self) -> bool {
        is_resolution(&self.labels)
    }

    /// `"resolved"` for a resolution, `"alert"` otherwise: the `type` of
    /// the JSON messages tocsin's channels send.
    pub fn kind(&self) -> &'static str {
        if self.resolved() {
            "resolved"
        } else {
            "alert"
        }
    }

    /// The value of label `name` (`service`, `error-code`...), if present
    /// and not empty.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The labels as a JSON object.
    pub fn labels_json(&self) -> Value {
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(labels)
    }

    /// Name/value pairs for fact lists: severity, count, first and last
    /// seen (UTC), rule and key.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Severity", self.severity.name().to_string()),
            ("Count", self.count.to_string()),
            ("First seen", human_time(self.first_seen)),
            ("Last seen", human_time(self.last_seen)),
            ("Rule", self.rule.clone()),
            ("Key", self.key.clone()),
        ]
    }

    /// The samples, each on one line (line breaks and runs of whitespace
    /// become one space) and cut to [`SAMPLE_CHARS`].
    pub fn sample_lines(&self) -> Vec<String> {
        self.samples
            .iter()
            .map(|s| truncate(&one_line(s), SAMPLE_CHARS))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The alert as Markdown: optional heading, the summary, a bulleted
    /// list of [`Notice::facts`] and a numbered list of samples.
    pub fn markdown(&self, style: Markdown) -> String {
        let b = style.bold;
        let mut out = String::new();
        if let Some(prefix) = style.heading {
            out.push_str(&format!("{prefix}{}\n\n", self.headline()));
        }
        out.push_str(&format!("{}\n\n", self.summary));
        for (name, value) in self.facts() {
            out.push_str(&format!("- {b}{name}:{b} {value}\n"));
        }
        let samples = self.sample_lines();
        if !samples.is_empty() {
            out.push_str(&format!("\n{b}Samples{b}\n\n"));
            for (i, sample) in samples.iter().enumerate() {
                out.push_str(&format!("{}. {sample}\n", i + 1));
            }
        }
        out.trim_end().to_string()
    }

    /// A fixed alert for the plugins' unit tests and examples.
    pub fn example() -> Notice {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        Notice {
            key: "DEVICE_START_FAILED|device-service".into(),
            rule: "device-start-failed".into(),
            count: 3,
            first_seen: 1_714_566_896_789,
            last_seen: 1_714_566_900_000,
            severity: Severity::Critical,
            title: "DEVICE_START_FAILED x3 on device-service".into(),
            summary: "3 DEVICE_START_FAILED errors from device-service within 15m: boot timeout"
                .into(),
            samples: vec![
                "boot timeout on pod-1".into(),
                "boot timeout\n  on <pod-2> & co".into(),
            ],
            labels: vec![
                pair("error-code", "DEVICE_START_FAILED"),
                pair("service", "device-service"),
                pair("severity", "critical"),
            ],
        }
    }
}

/// Epoch milliseconds as `2024-05-01 12:34:56 UTC` (for people; payload
/// fields meant for machines use [`rfc3339`]).
pub fn human_time(ms: i64) -> String {
    let text = rfc3339(ms);
    format!(
        "{} UTC",
        text.get(..19).unwrap_or(&text).replacen('T', " ", 1)
    )
}

/// `text` with line breaks and runs of whitespace turned into one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut to at most `max_chars` characters, ending with `…` when cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` cut to at most `max_bytes` bytes of UTF-8 (never inside a
/// character), ending with `…` when cut.
pub fn truncate_bytes(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The HTTP request a channel renders for one alert.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonRequest {
    pub method: String,
    pub url: String,
    /// Must include the content type; [`JsonRequest::post`] sets it.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl JsonRequest {
    /// `POST url` with `content-type: application/json`: what every vendor
    /// webhook takes.
    pub fn post(url: impl Into<String>, body: Value) -> JsonRequest {
        JsonRequest {
            method: "POST".to_string(),
            url: url.into(),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body,
        }
    }
}

/// A channel plugin that turns each alert into one JSON HTTP request.
/// Implement it on the plugin's configuration type and export it with
/// [`export_channel!`](crate::export_channel).
pub trait JsonChannel: Sized {
    /// The plugin name: the prefix of every error message.
    const NAME: &'static str;

    /// Read the settings from `config`. Keys not read are rejected
    /// afterwards (see [`configure`]).
    fn configure(config: &mut Table) -> Result<Self, String>;

    /// The request for `alert`.
    fn render(&self, alert: &Notice) -> Result<JsonRequest, String>;
}

/// Parse the configuration text of channel `C`, rejecting unknown keys.
pub fn configure<C: JsonChannel>(json: &str) -> Result<C, String> {
    let mut table = Table::parse(C::NAME, json)?;
    let channel = C::configure(&mut table)?;
    table.finish()?;
    Ok(channel)
}

/// Every [`JsonChannel`] is a [`Channel`](crate::channel::Channel):
/// `deliver` converts the alert to a [`Notice`], renders it and queues the
/// request with [`crate::http::send`] (the host checks the URL against the
/// rule's `grants.http` and sends it, with retries, after the call
/// returned). Export one with [`export_channel!`](crate::export_channel).
impl<T: JsonChannel + 'static> crate::channel::Channel for T {
    const NAME: &'static str = <T as JsonChannel>::NAME;

    fn configure(config: &mut Table) -> Result<Self, String> {
        <T as JsonChannel>::configure(config)
    }

    fn deliver(&self, alert: crate::channel::Alert) -> Result<(), String> {
        let request = self.render(&Notice::from(alert))?;
        crate::http::send(&crate::types::HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body.to_string().into_bytes(),
        })
        .map_err(|e| format!("{}: {e}", <T as JsonChannel>::NAME))
    }
}

impl From<crate::channel::Alert> for Notice {
    fn from(alert: crate::channel::Alert) -> Notice {
        use crate::channel::Severity as Wit;
        Notice {
            key: alert.key,
            rule: alert.rule,
            count: alert.count,
            first_seen: alert.first_seen,
            last_seen: alert.last_seen,
            severity: match alert.severity {
                Wit::Critical => Severity::Critical,
                Wit::High => Severity::High,
                Wit::Medium => Severity::Medium,
                Wit::Low => Severity::Low,
            },
            title: alert.title,
            summary: alert.summary,
            samples: alert.samples,
            labels: alert.labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_mappings() {
        assert_eq!(Severity::High.name(), "high");
        assert_eq!(Severity::Low.pick([1, 2, 3, 4]), 4);
        assert_eq!(Severity::Critical.colour(), "D32F2F");
        assert_eq!(Severity::Medium.emoji(), "🟠");
    }

    #[test]
    fn renderings() {
        let n = Notice::example();
        assert_eq!(
            n.headline(),
            "🚨 [CRITICAL] DEVICE_START_FAILED x3 on device-service"
        );
        assert_eq!(n.label("service"), Some("device-service"));
        assert_eq!(n.label("user-id"), None);
        assert!(!n.resolved());
        assert_eq!(n.kind(), "alert");
        let mut r = Notice::example();
        r.title = "DEVICE_START_FAILED on device-service resolved".into();
        r.labels.push(("status".into(), "resolved".into()));
        assert_eq!(r.kind(), "resolved");
        assert_eq!(
            r.headline(),
            "✅ [RESOLVED] DEVICE_START_FAILED on device-service resolved"
        );
        assert_eq!(n.labels_json()["error-code"], "DEVICE_START_FAILED");
        assert_eq!(
            n.facts()[2],
            ("First seen", "2024-05-01 12:34:56 UTC".into())
        );
        assert_eq!(
            n.sample_lines(),
            ["boot timeout on pod-1", "boot timeout on <pod-2> & co"]
        );
        assert_eq!(
            n.markdown(Markdown::MESSAGE),
            "### 🚨 [CRITICAL] DEVICE_START_FAILED x3 on device-service\n\n\
             3 DEVICE_START_FAILED errors from device-service within 15m: boot timeout\n\n\
             - **Severity:** critical\n\
             - **Count:** 3\n\
             - **First seen:** 2024-05-01 12:34:56 UTC\n\
             - **Last seen:** 2024-05-01 12:35:00 UTC\n\
             - **Rule:** device-start-failed\n\
             - **Key:** DEVICE_START_FAILED|device-service\n\n\
             **Samples**\n\n\
             1. boot timeout on pod-1\n\
             2. boot timeout on <pod-2> & co"
        );
        assert!(n
            .markdown(Markdown::CARD_BODY)
            .starts_with("3 DEVICE_START_FAILED"));
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate_bytes("abc", 3), "abc");
        // "é" is two bytes: never cut inside it.
        assert_eq!(truncate_bytes("aéééé", 6), "aé…");
        assert!(truncate_bytes(&"x".repeat(5000), 4096).len() <= 4096);
    }

    #[test]
    fn urls_and_required_keys() {
        let mut t = Table::parse("x", r#"{"url":"ftp://h","a":"http://","b":" "}"#).unwrap();
        assert_eq!(
            t.url("url").unwrap_err(),
            r#"x: "url": "ftp://h" must start with http:// or https://"#
        );
        assert!(t.url("a").unwrap_err().contains("has no host"));
        assert_eq!(
            t.required_url("c", "https://h/x").unwrap_err(),
            r#"x: "c": required (e.g. "https://h/x")"#
        );
        assert_eq!(
            t.required_string("b", "\"k\"").unwrap_err(),
            r#"x: "b": must not be empty"#
        );
        let mut t = Table::parse("x", r#"{"u":"https://h.example/p?q=1"}"#).unwrap();
        assert_eq!(t.url("u"), Ok(Some("https://h.example/p?q=1".into())));
    }
}
