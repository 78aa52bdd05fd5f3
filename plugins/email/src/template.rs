//! Tiny `{placeholder}` templates for email subjects and bodies.
//!
//! Templates are parsed when the binding is configured, so an unknown
//! placeholder is reported by `tocsin check` instead of being mailed
//! verbatim at 3 a.m. `{{` and `}}` write literal braces.

use tocsin_plugin_sdk::channel::{Alert, Severity};
use tocsin_plugin_sdk::rfc3339;

/// The placeholders, as written in templates, for error messages.
const AVAILABLE: &str =
    "{rule} {key} {count} {severity} {title} {summary} {samples} {labels} {first-seen} {last-seen}";

/// An alert field a template can refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Rule,
    Key,
    Count,
    Severity,
    Title,
    Summary,
    Samples,
    Labels,
    FirstSeen,
    LastSeen,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name.trim().replace('_', "-").as_str() {
            "rule" => Field::Rule,
            "key" => Field::Key,
            "count" => Field::Count,
            "severity" => Field::Severity,
            "title" => Field::Title,
            "summary" => Field::Summary,
            "samples" => Field::Samples,
            "labels" => Field::Labels,
            "first-seen" => Field::FirstSeen,
            "last-seen" => Field::LastSeen,
            _ => return None,
        })
    }
}

/// Where a rendered template goes, which decides how values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One line: lists are joined with `; `, line breaks become spaces.
    Subject,
    /// Plain text: lists are `- item` lines.
    Text,
    /// HTML: values are escaped, lists are `<ul>`.
    Html,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

impl Template {
    /// Parse `text`; the error explains the first problem (without the
    /// config key, which the caller adds).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &text[at + 1..];
                    let end = rest
                        .find(['}', '{', '\n'])
                        .filter(|&i| rest[i..].starts_with('}'))
                        .ok_or_else(|| {
                            format!(
                                "unclosed \"{{\" at character {} (write \"{{{{\" for a literal brace)",
                                text[..at].chars().count() + 1
                            )
                        })?;
                    let name = &rest[..end];
                    let field = Field::parse(name).ok_or_else(|| {
                        format!("unknown placeholder \"{{{name}}}\" (available: {AVAILABLE})")
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(field));
                    // Skip the name and the closing brace.
                    while chars.next_if(|&(i, _)| i <= at + 1 + end).is_some() {}
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template(parts))
    }

    /// Whether the template renders to nothing (an empty `html` setting
    /// means "no HTML part").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fill in `alert`.
    pub fn render(&self, alert: &Alert, mode: Mode) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(field) => out.push_str(&value(alert, *field, mode)),
            }
        }
        if mode == Mode::Subject {
            out = out.replace(['\r', '\n'], " ").trim().to_string();
        }
        out
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

/// Escape text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Render a list for `mode`; `(none)` when empty so the text still reads.
fn list(items: Vec<String>, mode: Mode) -> String {
    if items.is_empty() {
        return match mode {
            Mode::Html => "<p>(none)</p>".to_string(),
            _ => "(none)".to_string(),
        };
    }
    match mode {
        Mode::Subject => items.join("; "),
        Mode::Text => items
            .iter()
            .map(|item| format!("- {item}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Mode::Html => {
            let mut out = String::from("<ul>");
            for item in &items {
                out.push_str("<li>");
                out.push_str(&escape(item));
                out.push_str("</li>");
            }
            out.push_str("</ul>");
            out
        }
    }
}

fn value(alert: &Alert, field: Field, mode: Mode) -> String {
    let text = match field {
        Field::Samples => return list(alert.samples.clone(), mode),
        Field::Labels => {
            let labels = alert
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            return list(labels, mode);
        }
        Field::Rule => alert.rule.clone(),
        Field::Key => alert.key.clone(),
        Field::Count => alert.count.to_string(),
        Field::Severity => severity_name(alert.severity).to_string(),
        Field::Title => alert.title.clone(),
        Field::Summary => alert.summary.clone(),
        Field::FirstSeen => rfc3339(alert.first_seen),
        Field::LastSeen => rfc3339(alert.last_seen),
    };
    match mode {
        Mode::Html => escape(&text),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            key: "E|svc".into(),
            rule: "r".into(),
            count: 3,
            first_seen: 0,
            last_seen: 1_000,
            severity: Severity::High,
            title: "E x3 on svc".into(),
            summary: "3 E errors".into(),
            samples: vec!["a <b>".into(), "c".into()],
            labels: vec![("service".into(), "svc".into())],
        }
    }

    #[test]
    fn renders_each_mode() {
        let t = Template::parse("[{severity}] {title} {{x}} {samples}").unwrap();
        assert_eq!(
            t.render(&alert(), Mode::Subject),
            "[high] E x3 on svc {x} a <b>; c"
        );
        assert_eq!(
            t.render(&alert(), Mode::Text),
            "[high] E x3 on svc {x} - a <b>\n- c"
        );
        assert_eq!(
            t.render(&alert(), Mode::Html),
            "[high] E x3 on svc {x} <ul><li>a &lt;b&gt;</li><li>c</li></ul>"
        );
        let t = Template::parse("{first-seen}/{last_seen} {labels}").unwrap();
        assert_eq!(
            t.render(&alert(), Mode::Text),
            "1970-01-01T00:00:00.000Z/1970-01-01T00:00:01.000Z - service: svc"
        );
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Template::parse("{nope}")
            .unwrap_err()
            .starts_with("unknown placeholder \"{nope}\""));
        assert!(Template::parse("a {title")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("a {ti\ntle}")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("}").is_ok());
    }
}
