//! Sentry SDK intake: `POST /api/{project}/envelope/` and
//! `POST /api/{project}/store/`, so an SDK given the DSN
//! `http://<key>@<tocsin host>/<project>` reports to tocsin.
//!
//! - Auth: the DSN public key, from `X-Sentry-Auth: Sentry sentry_key=...`,
//!   `?sentry_key=`, or an envelope header's `dsn`; checked against
//!   `[ingest] sentry_keys` (empty: any key).
//! - Bodies: plain, gzip, deflate or br; chunked or not (see
//!   [`super::body`]). Envelope items with or without `length`, the last
//!   with or without a trailing newline.
//! - Items of type `event` become events; every other type (session,
//!   client_report, transaction, attachment...) is accepted and ignored.
//!
//! Mapping of an event: the last entry of `exception.values` gives the
//! errorCode (its `type`, as `ZERO_DIVISION_ERROR`, per
//! `[ingest] sentry_exception_code`), the message (`value`) and the stack
//! trace (rendered like Python's, most recent call last). An event without
//! an exception (`capture_message`) has errorCode
//! `[ingest] sentry_message_code` and its `message` / `logentry` text.
//! `level` gives the severity (fatal → critical, error → high, warning →
//! medium, info/debug → low); `server_name`, else tag `service`, else
//! `release` the serviceName (default `sentry-<project>`); tags, release,
//! environment and server_name go to metadata; `user.id` to userId;
//! `timestamp` (RFC 3339 or epoch seconds) to timestamp; `event_id` to the
//! event id.
//!
//! Answers `200 {"id": "<event_id>"}` like Sentry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{auth, Ingest};
use crate::config::IngestConfig;
use crate::event::{now_ms, Checker, Event, FieldError, Limit, Severity, MAX_LONG, MAX_SHORT};

const SOURCE: &str = "sentry";

/// Item types Sentry SDKs send that tocsin ignores, by name (others are
/// counted as `other`).
const KNOWN_TYPES: &[&str] = &[
    "session",
    "sessions",
    "client_report",
    "transaction",
    "attachment",
    "profile",
    "profile_chunk",
    "replay_event",
    "replay_recording",
    "check_in",
    "span",
    "log",
    "otel_log",
    "statsd",
    "metric_buckets",
    "user_report",
    "feedback",
    "security",
];

/// `POST /api/{project}/envelope/`.
pub async fn envelope(
    State(ingest): State<Ingest>,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cfg = ingest.config();
    let key = auth::sentry_key(&headers, &query);
    if key.is_some() {
        if let Err(r) = auth::require_sentry_key(&cfg.sentry_keys, key.as_deref(), SOURCE) {
            return r.into_response();
        }
    }
    let bytes = match ingest.read_body(&headers, body, SOURCE).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let envelope = match parse_envelope(&bytes) {
        Ok(e) => e,
        Err(error) => return super::invalid(SOURCE, "envelope", 0, &[error]),
    };
    if key.is_none() {
        let dsn = envelope
            .header
            .get("dsn")
            .and_then(Value::as_str)
            .and_then(auth::dsn_key);
        if let Err(r) = auth::require_sentry_key(&cfg.sentry_keys, dsn.as_deref(), SOURCE) {
            return r.into_response();
        }
    }
    let header_id = envelope.header.get("event_id").and_then(Value::as_str);
    let ctx = Ctx::new(cfg, &project);
    let received_at = now_ms();
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut first_id = None;
    for item in &envelope.items {
        if item.kind != "event" {
            let kind = KNOWN_TYPES
                .iter()
                .find(|k| **k == item.kind)
                .copied()
                .unwrap_or("other");
            metrics::counter!("tocsin_ingest_ignored_total", "source" => SOURCE, "kind" => kind)
                .increment(1);
            continue;
        }
        let value: Value = match serde_json::from_slice(item.payload) {
            Ok(v) => v,
            Err(e) => {
                errors.push(FieldError {
                    item: item.index,
                    field: String::new(),
                    reason: format!("event item is not valid JSON: {e}"),
                });
                continue;
            }
        };
        match map_event(item.index, &value, &ctx, header_id, received_at) {
            Ok((event, id)) => {
                first_id.get_or_insert(id);
                events.push(event);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return super::invalid(SOURCE, "envelope", 0, &errors);
    }
    if let Err(r) = ingest.submit(SOURCE, events).await {
        return r;
    }
    match header_id.map(str::to_string).or(first_id) {
        Some(id) => Json(json!({ "id": id })).into_response(),
        None => Json(json!({})).into_response(),
    }
}

/// `POST /api/{project}/store/`: one event as JSON (older SDKs).
pub async fn store(
    State(ingest): State<Ingest>,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cfg = ingest.config();
    let key = auth::sentry_key(&headers, &query);
    if let Err(r) = auth::require_sentry_key(&cfg.sentry_keys, key.as_deref(), SOURCE) {
        return r.into_response();
    }
    let bytes = match ingest.read_body(&headers, body, SOURCE).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return super::invalid(
                SOURCE,
                "event",
                0,
                &[FieldError {
                    item: 0,
                    field: String::new(),
                    reason: format!("body is not valid JSON: {e}"),
                }],
            )
        }
    };
    let ctx = Ctx::new(cfg, &project);
    match map_event(0, &value, &ctx, None, now_ms()) {
        Ok((event, id)) => match ingest.submit(SOURCE, vec![event]).await {
            Ok(()) => Json(json!({ "id": id })).into_response(),
            Err(r) => r,
        },
        Err(errors) => super::invalid(SOURCE, "event", 0, &errors),
    }
}

/// A parsed envelope: its header and items (payloads borrow the body).
#[derive(Debug)]
pub struct Envelope<'a> {
    pub header: Map<String, Value>,
    pub items: Vec<Item<'a>>,
}

/// One envelope item.
#[derive(Debug)]
pub struct Item<'a> {
    /// Position among the items (0-based), as errors name it.
    pub index: usize,
    pub kind: String,
    pub payload: &'a [u8],
}

/// Splits at the first newline: the line (without `\r\n` / `\n`) and what
/// follows it.
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let line = &data[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &data[i + 1..])
        }
        None => (data, &[]),
    }
}

/// Parses Sentry's envelope format: a JSON header line, then items, each a
/// JSON header line and a payload of `length` bytes or, without `length`,
/// up to the next newline.
pub fn parse_envelope(data: &[u8]) -> Result<Envelope<'_>, FieldError> {
    let fail = |item: usize, field: &str, reason: String| FieldError {
        item,
        field: field.into(),
        reason,
    };
    let (line, mut rest) = split_line(data);
    let header = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(fail(0, "envelope header", "must be a JSON object".into()));
        }
        Err(e) => {
            return Err(fail(
                0,
                "envelope header",
                format!("is not valid JSON: {e}"),
            ));
        }
    };
    let mut items = Vec::new();
    loop {
        // Blank lines between items are tolerated.
        let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        rest = &rest[skip..];
        if rest.is_empty() {
            break;
        }
        let index = items.len();
        let (line, after) = split_line(rest);
        let item_header = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(fail(index, "item header", "must be a JSON object".into())),
            Err(e) => {
                return Err(fail(
                    index,
                    "item header",
                    format!("is not valid JSON: {e}"),
                ))
            }
        };
        let kind = match item_header.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => {
                return Err(fail(
                    index,
                    "type",
                    "item header needs a string `type`".into(),
                ))
            }
        };
        let payload;
        match item_header.get("length") {
            None | Some(Value::Null) => {
                let (line, after) = split_line(after);
                payload = line;
                rest = after;
            }
            Some(Value::Number(n)) => {
                let Some(len) = n.as_u64().and_then(|l| usize::try_from(l).ok()) else {
                    return Err(fail(index, "length", format!("{n} is not a byte count")));
                };
                if len > after.len() {
                    return Err(fail(
                        index,
                        "length",
                        format!("says {len} bytes but only {} follow", after.len()),
                    ));
                }
                payload = &after[..len];
                let tail = &after[len..];
                rest = tail
                    .strip_prefix(b"\r\n")
                    .or_else(|| tail.strip_prefix(b"\n"))
                    .unwrap_or(tail);
            }
            Some(other) => {
                return Err(fail(
                    index,
                    "length",
                    format!("must be a number, got {other}"),
                ));
            }
        }
        items.push(Item {
            index,
            kind,
            payload,
        });
    }
    Ok(Envelope { header, items })
}

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
            source: Arc::from(SOURCE),
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
    match obj.get("tags") {
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if k == "service" {
                    tag_service = Some(v.clone());
                }
                metadata.insert(k.clone(), v);
            }
        }
        // Older SDKs: a list of [key, value] pairs.
        Some(Value::Array(pairs)) => {
            for pair in pairs {
                if let Some([Value::String(k), v]) = pair.as_array().map(Vec::as_slice) {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if k == "service" {
                        tag_service = Some(v.clone());
                    }
                    metadata.insert(k.clone(), v);
                }
            }
        }
        _ => {}
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
        code.map(|c| super::truncate(c, MAX_SHORT)),
        Limit::Short,
    );
    let message = check.required(
        "message",
        message.map(|m| super::truncate(m, MAX_LONG)),
        Limit::Long,
    );
    let service = check.required(
        "server_name",
        Some(super::truncate(service, MAX_SHORT)),
        Limit::Short,
    );
    let user = check.optional(
        "user.id",
        user.map(|u| super::truncate(u, MAX_SHORT)),
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
    let tail = super::truncate(tail, MAX_LONG / 4);
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

    #[test]
    fn envelopes_with_and_without_lengths() {
        let body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\",\"length\":10}\nhello\nworl\n{\"type\":\"event\"}\n{\"message\":\"x\"}";
        let env = parse_envelope(body).expect("valid");
        assert_eq!(env.items.len(), 2);
        assert_eq!(env.items[0].payload, b"hello\nworl");
        assert_eq!(
            (env.items[1].kind.as_str(), env.items[1].payload),
            ("event", &b"{\"message\":\"x\"}"[..])
        );
        let body = b"{}\n{\"type\":\"event\",\"length\":2}\n{}\n\n{\"type\":\"session\"}\n{}\n";
        let env = parse_envelope(body).expect("valid");
        assert_eq!(env.items.len(), 2);
        let env = parse_envelope(b"{}").expect("header only");
        assert!(env.items.is_empty());
        let e = parse_envelope(b"{}\n{\"type\":\"event\",\"length\":99}\n{}").expect_err("short");
        assert_eq!((e.item, e.field.as_str()), (0, "length"));
        let e = parse_envelope(b"{}\n{\"type\":\"session\"}\n{}\nnot json\n").expect_err("bad");
        assert_eq!((e.item, e.field.as_str()), (1, "item header"));
        let e = parse_envelope(b"nope").expect_err("bad header");
        assert_eq!(e.field, "envelope header");
    }
}
