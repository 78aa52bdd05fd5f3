//! `email`: send alerts by email through the host's SMTP settings.
//!
//! The plugin renders the message; the host checks the recipients against
//! the rule's `grants.email` and sends it after the call returned.
//!
//! ```toml
//! [[channels]]
//! plugin = "email"
//! grants = { email = ["oncall@example.com"] }
//! [channels.config]
//! to = ["oncall@example.com"]            # default: the [smtp] recipients
//! subject = "[tocsin][{severity}] {title}" # default
//! # text = "..."                         # default: see DEFAULT_TEXT
//! # html = "..."                         # default: see DEFAULT_HTML; "" for none
//! ```
//!
//! A resolution (a resolved Prometheus or Alertmanager alert) gets the
//! subject prefix `[RESOLVED] `.
//!
//! Placeholders: `{rule} {key} {count} {severity} {title} {summary} {samples}
//! {labels} {first-seen} {last-seen}`; `{{`/`}}` for literal braces.

mod template;

use template::{Mode, Template};
use tocsin_plugin_sdk::channel::{Alert, Channel};
use tocsin_plugin_sdk::chat::is_resolution;
use tocsin_plugin_sdk::email::send;
use tocsin_plugin_sdk::{EmailMessage as Message, Table};

/// Default subject: severity first so mail filters can sort on it.
const DEFAULT_SUBJECT: &str = "[tocsin][{severity}] {title}";

/// Default plain-text body.
const DEFAULT_TEXT: &str = "{title}

{summary}

Rule:       {rule}
Key:        {key}
Severity:   {severity}
Count:      {count}
First seen: {first-seen}
Last seen:  {last-seen}

Samples:
{samples}

Labels:
{labels}
";

/// Default HTML alternative (values are escaped when rendered).
const DEFAULT_HTML: &str = r#"<!DOCTYPE html>
<html><body style="font-family: sans-serif">
<h2>{title}</h2>
<p>{summary}</p>
<table cellpadding="4">
<tr><th align="left">Rule</th><td>{rule}</td></tr>
<tr><th align="left">Key</th><td><code>{key}</code></td></tr>
<tr><th align="left">Severity</th><td>{severity}</td></tr>
<tr><th align="left">Count</th><td>{count}</td></tr>
<tr><th align="left">First seen</th><td>{first-seen}</td></tr>
<tr><th align="left">Last seen</th><td>{last-seen}</td></tr>
</table>
<h3>Samples</h3>
{samples}
<h3>Labels</h3>
{labels}
</body></html>
"#;

/// Settings of one binding, templates already parsed.
#[derive(Debug)]
struct Config {
    /// Empty: the host's default recipients.
    to: Vec<String>,
    subject: Template,
    text: Template,
    /// `None` when configured as `""`: send plain text only.
    html: Option<Template>,
}

impl Config {
    fn read(t: &mut Table) -> Result<Config, String> {
        let to = t.strings("to")?.unwrap_or_default();
        for address in &to {
            let plausible = address.contains('@')
                && !address.contains(|c: char| c.is_whitespace() || c == ',' || c == ';');
            if !plausible {
                return Err(t.error(
                    "to",
                    format!("\"{address}\" is not an email address (one address per list item)"),
                ));
            }
        }
        let mut template = |key: &'static str, default: &str| -> Result<Template, String> {
            let text = t.string(key)?;
            Template::parse(text.as_deref().unwrap_or(default)).map_err(|e| t.error(key, e))
        };
        let subject = template("subject", DEFAULT_SUBJECT)?;
        let text = template("text", DEFAULT_TEXT)?;
        let html = template("html", DEFAULT_HTML)?;
        Ok(Config {
            to,
            subject,
            text,
            html: (!html.is_empty()).then_some(html),
        })
    }

    fn message(&self, alert: &Alert) -> Message {
        let mut subject = self.subject.render(alert, Mode::Subject);
        if is_resolution(&alert.labels) {
            // Mail filters and threads sort on it, whatever the template.
            subject.insert_str(0, "[RESOLVED] ");
        }
        Message {
            to: self.to.clone(),
            subject,
            text: self.text.render(alert, Mode::Text),
            html: self.html.as_ref().map(|h| h.render(alert, Mode::Html)),
        }
    }
}

impl Channel for Config {
    const NAME: &'static str = "email";

    fn configure(config: &mut Table) -> Result<Self, String> {
        Config::read(config)
    }

    fn deliver(&self, alert: Alert) -> Result<(), String> {
        send(&self.message(&alert)).map_err(|e| format!("email: {e}"))
    }
}

tocsin_plugin_sdk::export_channel!(Config);

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::channel::Severity;

    #[test]
    fn defaults_render() {
        let config = Config::from_json("{}").unwrap();
        let alert = Alert {
            key: "E|svc".into(),
            rule: "r".into(),
            count: 3,
            first_seen: 0,
            last_seen: 0,
            severity: Severity::Critical,
            title: "E x3 on svc".into(),
            summary: "3 E errors".into(),
            samples: vec!["boom".into()],
            labels: vec![],
        };
        let m = config.message(&alert);
        assert!(m.to.is_empty());
        assert_eq!(m.subject, "[tocsin][critical] E x3 on svc");
        assert!(m.text.contains("Samples:\n- boom\n"));
        assert!(m.html.unwrap().contains("<li>boom</li>"));
        let config = Config::from_json(r#"{"html":"","to":"a@b.c"}"#).unwrap();
        assert!(config.message(&alert).html.is_none());
        assert_eq!(config.to, ["a@b.c"]);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |json: &str| Config::from_json(json).unwrap_err();
        assert!(err(r#"{"subject":"{sevrity}"}"#)
            .starts_with(r#"email: "subject": unknown placeholder "{sevrity}""#));
        assert!(err(r#"{"to":["a@b.c, d@e.f"]}"#).starts_with(r#"email: "to":"#));
        assert!(err(r#"{"from":"x"}"#).contains(r#"unknown key "from""#));
    }
}
