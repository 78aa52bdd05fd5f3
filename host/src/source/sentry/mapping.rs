//! A Sentry event as a tocsin event: see the mapping in the module
//! documentation of [`super`]. About a third of this file is its tests,
//! which read real SDK payloads.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::config::IngestConfig;
use crate::event::{Checker, Event, FieldError, Limit, Severity, MAX_LONG, MAX_SHORT};
use crate::source::truncate;

/// How events are coded, and for which project.
pub struct Ctx<'a> {
    pub project: &'a str,
    pub exception_code: &'a str,
    pub message_code: &'a str,
    source: Arc<str>,
}

impl<'a> Ctx<'a> {
    pub fn new(cfg: &'a IngestConfig, project: &'a str) -> Self {
        Self {
            project,
            exception_code: &cfg.sentry_exception_code,
            message_code: &cfg.sentry_message_code,
            source: Arc::from(super::SOURCE),
        }
    }
}

/// Maps one Sentry event (item `item`) to an event, validated by
/// [`parse_event`]; also returns the id to answer (Sentry's 32-hex form).
pub fn map_event(
    item: usize,
    value: &Value,
    ctx: &Ctx<'_>,
    fallback_id: Option<&str>,
    received_at: i64,
) -> Result<(Event, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, reason: String| {
        errors.push(FieldError {
            item,
            field: field.into(),
            reason,
        })
    };
    let Some(obj) = value.as_object() else {
        err("", "expected an event object".into());
        return Err(errors);
    };
    let text = |v: Option<&Value>| -> Option<String> {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };

    // The id: the event's, else the envelope's, else a new one.
    let id = match text(obj.get("event_id")).or(fallback_id.map(str::to_string)) {
        Some(s) => match uuid::Uuid::try_parse(&s) {
            Ok(u) => Some(u),
            Err(_) => {
                err("event_id", format!("{s:?} is not a UUID (32 hex digits)"));
                None
            }
        },
        None => Some(uuid::Uuid::now_v7()),
    };

    // What happened: the last exception, else the message.
    let exception = last_exception(obj.get("exception"));
    let level = text(obj.get("level")).map(|l| l.to_ascii_lowercase());
    let (code, message, stack, exc_type, exc_module) = if let Some(e) = exception {
        let ty = text(e.get("type"));
        let value = text(e.get("value"));
        let code = match ctx.exception_code {
            "type" => screaming_snake(ty.as_deref().unwrap_or("exception")),
            "raw-type" => ty.clone().unwrap_or_else(|| "Exception".into()),
            fixed => fixed.to_string(),
        };
        let message = value
            .or_else(|| ty.clone())
            .or_else(|| message_text(obj))
            .unwrap_or_else(|| "exception".into());
        let stack = render_stack(e);
        (Some(code), Some(message), stack, ty, text(e.get("module")))
    } else if let Some(message) = message_text(obj) {
        (
            Some(ctx.message_code.to_string()),
            Some(message),
            None,
            None,
            None,
        )
    } else {
        err(
            "exception",
            "the event has neither an exception nor a message".into(),
        );
        (None, None, None, None, None)
    };

    let severity = match level.as_deref() {
        Some("fatal") | Some("critical") => Severity::Critical,
        Some("warning") | Some("warn") => Severity::Medium,
        Some("info") | Some("debug") | Some("log") => Severity::Low,
        // error, missing (Sentry's default level) or unknown
        _ => Severity::High,
    };

    let mut metadata = BTreeMap::new();
    let mut tag_service = None;
    // A map, or (older SDKs) a list of [key, value] pairs.
    let tags: Vec<(&str, &Value)> = match obj.get("tags") {
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        Some(Value::Array(pairs)) => pairs
            .iter()
            .filter_map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(k), v]) => Some((k.as_str(), v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for (k, v) in tags {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if k == "service" {
            tag_service = Some(v.clone());
        }
        metadata.insert(k.to_string(), v);
    }
    let server_name = text(obj.get("server_name"));
    let release = text(obj.get("release"));
    for key in [
        "release",
        "environment",
        "server_name",
        "platform",
        "logger",
        "transaction",
    ] {
        if let Some(v) = text(obj.get(key)) {
            metadata.insert(key.into(), v);
        }
    }
    metadata.insert("sentry.project".into(), ctx.project.into());
    if let Some(t) = exc_type {
        metadata.insert("exception.type".into(), t);
    }
    if let Some(m) = exc_module {
        metadata.insert("exception.module".into(), m);
    }
    let service = server_name
        .or(tag_service.filter(|s| !s.trim().is_empty()))
        .or(release)
        .unwrap_or_else(|| format!("sentry-{}", ctx.project));

    let user = obj.get("user").and_then(Value::as_object).and_then(|u| {
        ["id", "username", "email"]
            .iter()
            .find_map(|k| match u.get(*k) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
    });

    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => received_at,
        Some(v) => match sentry_time(v) {
            Ok(ms) => ms,
            Err(reason) => {
                err("timestamp", reason);
                received_at
            }
        },
    };

    let Some(id) = id else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    // Producers we do not control: long texts are cut, not refused.
    let mut check = Checker::new(item);
    let code = check.required(
        "exception.values.type",
        code.map(|c| truncate(c, MAX_SHORT)),
        Limit::Short,
    );
    let message = check.required(
        "message",
        message.map(|m| truncate(m, MAX_LONG)),
        Limit::Long,
    );
    let service = check.required(
        "server_name",
        Some(truncate(service, MAX_SHORT)),
        Limit::Short,
    );
    let user = check.optional(
        "user.id",
        user.map(|u| truncate(u, MAX_SHORT)),
        Limit::Short,
    );
    let stack = check.optional("exception.values.stacktrace", stack, Limit::Long);
    check.finish()?;
    let (Some(code), Some(message), Some(service)) = (code, message, service) else {
        return Err(Vec::new()); // reported by the checker
    };
    let mut event = Event::new(
        ctx.source.clone(),
        code,
        severity,
        message,
        service,
        timestamp,
        received_at,
    );
    event.event_id = id.hyphenated().to_string();
    event.dedup = true;
    event.user_id = user;
    event.stack_trace = stack;
    event.metadata = metadata;
    Ok((event, id.simple().to_string()))
}

/// The last entry of `exception.values` (or of a bare list).
fn last_exception(exception: Option<&Value>) -> Option<&Map<String, Value>> {
    let values = match exception? {
        Value::Object(o) => o.get("values")?.as_array()?,
        Value::Array(a) => a,
        _ => return None,
    };
    values.iter().rev().find_map(Value::as_object)
}

/// The text of a message event: `message` (a string, or an object with
/// `formatted` / `message`), else `logentry.formatted` / `logentry.message`.
fn message_text(obj: &Map<String, Value>) -> Option<String> {
    let from = |v: &Value| -> Option<String> {
        let s = match v {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => ["formatted", "message"].iter().find_map(|k| {
                o.get(*k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
            }),
            _ => None,
        }?;
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    };
    ["message", "logentry"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(from))
}

/// `ZeroDivisionError` → `ZERO_DIVISION_ERROR`, `HTTPError` → `HTTP_ERROR`,
/// `java.lang.NullPointerException` → `JAVA_LANG_NULL_POINTER_EXCEPTION`.
pub fn screaming_snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && i > 0 {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
                let boundary = prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_lower);
                if boundary && !out.is_empty() && !out.ends_with('_') {
                    out.push('_');
                }
            }
            out.push(c.to_ascii_uppercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        "EXCEPTION".into()
    } else {
        out
    }
}

/// The exception's frames as Python prints them, most recent call last
/// (Sentry sends frames oldest first), ending with `Type: value`. Long
/// traces keep their most recent frames.
fn render_stack(exception: &Map<String, Value>) -> Option<String> {
    let frames = exception
        .get("stacktrace")
        .and_then(|s| s.get("frames"))
        .and_then(Value::as_array)?;
    if frames.is_empty() {
        return None;
    }
    let field = |f: &Value, keys: &[&str]| -> Option<String> {
        keys.iter().find_map(|k| match f.get(*k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    let lines: Vec<String> = frames
        .iter()
        .map(|f| {
            format!(
                "  File \"{}\", line {}, in {}",
                field(f, &["filename", "abs_path", "module"]).unwrap_or_else(|| "<unknown>".into()),
                field(f, &["lineno"]).unwrap_or_else(|| "?".into()),
                field(f, &["function"]).unwrap_or_else(|| "<unknown>".into()),
            )
        })
        .collect();
    let head = "Traceback (most recent call last):";
    let ty = exception
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Exception");
    let tail = match exception.get("value").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => format!("{ty}: {v}"),
        _ => ty.to_string(),
    };
    let tail = truncate(tail, MAX_LONG / 4);
    // Keep the most recent frames that fit.
    let budget = MAX_LONG - head.len() - tail.len() - 64;
    let mut kept = 0;
    let mut used = 0;
    for line in lines.iter().rev() {
        if used + line.len() + 1 > budget {
            break;
        }
        used += line.len() + 1;
        kept += 1;
    }
    let mut out = String::with_capacity(head.len() + used + tail.len() + 64);
    out.push_str(head);
    out.push('\n');
    let omitted = lines.len() - kept;
    if omitted > 0 {
        out.push_str(&format!("  ... {omitted} earlier frame(s) omitted\n"));
    }
    for line in &lines[omitted..] {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&tail);
    Some(out)
}

/// Sentry timestamps: RFC 3339 strings (with or without offset; without is
/// UTC) or epoch seconds as a number (JavaScript SDKs send fractions).
fn sentry_time(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => {
            let secs = n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("{n} is not a valid epoch time in seconds"))?;
            Ok((secs * 1000.0).round() as i64)
        }
        Value::String(s) => {
            use time::format_description::well_known::Rfc3339;
            if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
                return Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0));
            }
            let naive = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
            );
            if let Ok(t) = time::PrimitiveDateTime::parse(s, &naive) {
                let t = t.assume_utc();
                return Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0));
            }
            if let Ok(secs) = s.trim().parse::<f64>() {
                return sentry_time(&json!(secs));
            }
            Err(format!(
                "{s:?} is neither an RFC 3339 time nor epoch seconds"
            ))
        }
        _ => Err("must be an RFC 3339 string or epoch seconds".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        static CFG: std::sync::OnceLock<IngestConfig> = std::sync::OnceLock::new();
        Ctx::new(CFG.get_or_init(IngestConfig::default), "42")
    }

    /// An event as sentry-sdk 2.x (Python) sends it for `1 / 0`, trimmed.
    fn python_exception() -> Value {
        json!({
            "level": "error",
            "exception": {"values": [{
                "mechanism": {"type": "generic", "handled": true},
                "module": null,
                "type": "ZeroDivisionError",
                "value": "division by zero",
                "stacktrace": {"frames": [
                    {"filename": "app.py", "abs_path": "/srv/app.py", "function": "<module>", "module": "__main__", "lineno": 12, "context_line": "main()"},
                    {"filename": "app.py", "abs_path": "/srv/app.py", "function": "divide", "module": "__main__", "lineno": 5, "context_line": "    return a / b"}
                ]}
            }]},
            "event_id": "b1f2c3d4e5f60718293a4b5c6d7e8f90",
            "timestamp": "2027-01-15T08:00:00.250000Z",
            "tags": {"region": "eu-west", "service": "tagged"},
            "release": "shop@1.2.3",
            "environment": "production",
            "server_name": "checkout",
            "user": {"id": "u-7"},
            "platform": "python",
        })
    }

    #[test]
    fn maps_a_python_exception() {
        let (e, id) = map_event(0, &python_exception(), &ctx(), None, 5).expect("valid");
        assert_eq!(id, "b1f2c3d4e5f60718293a4b5c6d7e8f90");
        assert_eq!(e.event_id, "b1f2c3d4-e5f6-0718-293a-4b5c6d7e8f90");
        assert_eq!(&*e.source, "sentry");
        assert_eq!(e.error_code, "ZERO_DIVISION_ERROR");
        assert_eq!(e.message, "division by zero");
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.service_name, "checkout");
        assert_eq!(e.timestamp, 1_800_000_000_250);
        assert_eq!(e.user_id.as_deref(), Some("u-7"));
        assert_eq!(
            e.stack_trace.as_deref(),
            Some(
                "Traceback (most recent call last):\n  File \"app.py\", line 12, in <module>\n  File \"app.py\", line 5, in divide\nZeroDivisionError: division by zero"
            )
        );
        let md = |k: &str| e.metadata.get(k).map(String::as_str);
        assert_eq!(md("region"), Some("eu-west"));
        assert_eq!(md("release"), Some("shop@1.2.3"));
        assert_eq!(md("environment"), Some("production"));
        assert_eq!(md("server_name"), Some("checkout"));
        assert_eq!(md("exception.type"), Some("ZeroDivisionError"));
        assert_eq!(md("sentry.project"), Some("42"));
    }

    #[test]
    fn service_falls_back_to_tag_release_and_project() {
        let mut v = python_exception();
        v.as_object_mut().map(|o| o.remove("server_name"));
        assert_eq!(
            map_event(0, &v, &ctx(), None, 0).expect("v").0.service_name,
            "tagged"
        );
        v["tags"] = json!({});
        assert_eq!(
            map_event(0, &v, &ctx(), None, 0).expect("v").0.service_name,
            "shop@1.2.3"
        );
        v.as_object_mut().map(|o| o.remove("release"));
        assert_eq!(
            map_event(0, &v, &ctx(), None, 0).expect("v").0.service_name,
            "sentry-42"
        );
    }

    #[test]
    fn codes_are_configurable() {
        let cfg = IngestConfig {
            sentry_exception_code: "raw-type".into(),
            sentry_message_code: "LOG".into(),
            ..IngestConfig::default()
        };
        let c = Ctx::new(&cfg, "1");
        let (e, _) = map_event(0, &python_exception(), &c, None, 0).expect("valid");
        assert_eq!(e.error_code, "ZeroDivisionError");
        let (e, _) = map_event(0, &json!({"message": "hi"}), &c, None, 0).expect("valid");
        assert_eq!(e.error_code, "LOG");
        let cfg = IngestConfig {
            sentry_exception_code: "APP_ERROR".into(),
            ..IngestConfig::default()
        };
        let (e, _) =
            map_event(0, &python_exception(), &Ctx::new(&cfg, "1"), None, 0).expect("valid");
        assert_eq!(e.error_code, "APP_ERROR");
    }

    #[test]
    fn messages_levels_and_node_timestamps() {
        let v = json!({"message": "cache warmed slowly", "level": "warning", "timestamp": 1_800_000_000.789_f64});
        let (e, _) = map_event(0, &v, &ctx(), None, 0).expect("valid");
        assert_eq!(
            (e.error_code.as_str(), e.message.as_str()),
            ("MESSAGE", "cache warmed slowly")
        );
        assert_eq!(e.severity, Severity::Medium);
        assert_eq!(e.timestamp, 1_800_000_000_789);
        assert_eq!(e.stack_trace, None);
        let v = json!({"logentry": {"message": "user %s failed", "formatted": "user 7 failed"}, "level": "fatal"});
        let (e, _) = map_event(0, &v, &ctx(), None, 0).expect("valid");
        assert_eq!(
            (e.message.as_str(), e.severity),
            ("user 7 failed", Severity::Critical)
        );
        let v = json!({"logentry": {"message": "plain"}, "level": "debug", "timestamp": "2027-01-15T08:00:00"});
        let (e, _) = map_event(0, &v, &ctx(), None, 0).expect("valid");
        assert_eq!(
            (e.message.as_str(), e.severity, e.timestamp),
            ("plain", Severity::Low, 1_800_000_000_000)
        );
    }

    #[test]
    fn invalid_events_name_their_fields() {
        let errors = map_event(
            3,
            &json!({"level": "error", "timestamp": "soon"}),
            &ctx(),
            None,
            0,
        )
        .expect_err("invalid");
        let fields: Vec<(usize, &str)> =
            errors.iter().map(|e| (e.item, e.field.as_str())).collect();
        assert_eq!(fields, vec![(3, "exception"), (3, "timestamp")]);
        let errors = map_event(
            0,
            &json!({"message": "m", "event_id": "nope"}),
            &ctx(),
            None,
            0,
        )
        .expect_err("invalid");
        assert_eq!(errors[0].field, "event_id");
    }

    #[test]
    fn screaming_snake_names() {
        for (from, to) in [
            ("ZeroDivisionError", "ZERO_DIVISION_ERROR"),
            ("HTTPError", "HTTP_ERROR"),
            ("OSError", "OS_ERROR"),
            ("UTF8DecodeError", "UTF8_DECODE_ERROR"),
            (
                "java.lang.NullPointerException",
                "JAVA_LANG_NULL_POINTER_EXCEPTION",
            ),
            ("Error", "ERROR"),
            ("__weird__", "WEIRD"),
            ("", "EXCEPTION"),
        ] {
            assert_eq!(screaming_snake(from), to);
        }
    }

    #[test]
    fn long_stacks_keep_the_most_recent_frames() {
        let frames: Vec<Value> = (0..5000)
            .map(|i| json!({"filename": format!("f{i}.py"), "lineno": i, "function": "g"}))
            .collect();
        let v = json!({"exception": {"values": [{"type": "RecursionError", "value": "deep", "stacktrace": {"frames": frames}}]}});
        let (e, _) = map_event(0, &v, &ctx(), None, 0).expect("valid");
        let s = e.stack_trace.expect("stack");
        assert!(s.len() <= MAX_LONG);
        assert!(s.contains("earlier frame(s) omitted"));
        assert!(s.contains("f4999.py"));
        assert!(!s.contains("\"f0.py\""));
    }
}
