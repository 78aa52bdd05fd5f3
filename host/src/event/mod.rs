//! The error event as it enters tocsin, and its validation.
//!
//! Producers speak the seed's JSON format (camelCase field names). Every
//! source (HTTP, AMQP, ...) goes through [`parse_event`] so that one set of
//! rules decides what a valid event is and one set of messages explains why
//! an event was refused.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How bad an error is; the seed's four levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    /// Parses a severity case-insensitively, as producers are inconsistent.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "critical" => Some(Self::Critical),
            "high" => Some(Self::High),
            "medium" => Some(Self::Medium),
            "low" => Some(Self::Low),
            _ => None,
        }
    }

    /// The lowercase name used in JSON, labels and rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An accepted error event. Cheap to clone: the pipeline may hand the same
/// event to several rules.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_id: String,
    pub source: Arc<str>,
    pub error_code: String,
    pub severity: Severity,
    pub message: String,
    pub service_name: String,
    /// Producer's time, milliseconds since the epoch.
    pub timestamp: i64,
    /// Host's time of acceptance, milliseconds since the epoch.
    pub received_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Whether the pipeline must recognise a second delivery of this event
    /// (same `event_id`) and not count it again: true when the id came from
    /// the producer or from an at-least-once source.
    #[serde(skip)]
    pub dedup: bool,
    /// The event reports that an alert stopped (a resolved Prometheus or
    /// Alertmanager alert), not an error: rules that match it notify a
    /// resolution instead of counting it (see [`crate::pipeline::resolve`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolved: bool,
    /// Only these rules take the event (every rule when `None`): a
    /// dead-lettered event replayed goes to the rules that failed on it,
    /// since the others counted it already and may have forgotten its id
    /// by now ([`crate::source::amqp_dlq`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_rules: Option<Vec<String>>,
}

/// One reason an input item was refused: which item, which field, why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FieldError {
    /// Position of the item in the submitted batch (0 for a single event).
    pub item: usize,
    /// The offending field (camelCase, as sent), or `""` for the item itself.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "item {}: {}", self.item, self.reason)
        } else {
            write!(
                f,
                "item {}: field `{}`: {}",
                self.item, self.field, self.reason
            )
        }
    }
}

/// Longest accepted value of a short text field (codes, names, ids).
pub const MAX_SHORT: usize = 256;
/// Longest accepted message or stack trace.
pub const MAX_LONG: usize = 64 * 1024;

pub mod id;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch of an RFC 3339 time (the Alertmanager
/// API's times, `--now`, event timestamps as strings).
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?;
    Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

/// An epoch-milliseconds time as RFC 3339 in UTC, with milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Event {
    /// An event with its required fields and none of the optional ones: a
    /// fresh id (`dedup` off), no user, stack or metadata. Sources check
    /// their values with a [`Checker`] first, then set what else they have.
    pub fn new(
        source: Arc<str>,
        error_code: String,
        severity: Severity,
        message: String,
        service_name: String,
        timestamp: i64,
        received_at: i64,
    ) -> Self {
        Self {
            event_id: id::fresh(),
            source,
            error_code,
            severity,
            message,
            service_name,
            timestamp,
            received_at,
            user_message: None,
            user_id: None,
            stack_trace: None,
            metadata: BTreeMap::new(),
            dedup: false,
            resolved: false,
            only_rules: None,
        }
    }
}

/// How long a text field may be.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// Codes, names, ids: [`MAX_SHORT`] bytes.
    Short,
    /// Messages and stack traces: [`MAX_LONG`] bytes.
    Long,
}

impl Limit {
    fn bytes(self) -> usize {
        match self {
            Self::Short => MAX_SHORT,
            Self::Long => MAX_LONG,
        }
    }
}

/// Checks the fields of one input item against the one set of rules for a
/// valid event, collecting every problem under the name the *source* gives
/// the field (`labels.alertname`, `exception.values.type`...). Every source
/// builds its events through it, so no source re-validates another's way.
pub struct Checker {
    item: usize,
    errors: Vec<FieldError>,
}

impl Checker {
    /// A checker for item `item` of a batch.
    pub fn new(item: usize) -> Self {
        Self {
            item,
            errors: Vec::new(),
        }
    }

    /// Records that `field` is wrong for `reason`.
    pub fn reject(&mut self, field: &str, reason: impl Into<String>) {
        let field = field.to_string();
        if !self.errors.iter().any(|e| e.field == field) {
            self.errors.push(FieldError {
                item: self.item,
                field,
                reason: reason.into(),
            });
        }
    }

    /// A required text: present, not blank, within `limit`.
    pub fn required(&mut self, field: &str, value: Option<String>, limit: Limit) -> Option<String> {
        match value {
            None => {
                self.reject(field, "is required");
                None
            }
            Some(s) if s.trim().is_empty() => {
                self.reject(field, "must not be empty");
                None
            }
            Some(s) => self.within(field, s, limit),
        }
    }

    /// An optional text, within `limit` when present.
    pub fn optional(&mut self, field: &str, value: Option<String>, limit: Limit) -> Option<String> {
        self.within(field, value?, limit)
    }

    fn within(&mut self, field: &str, s: String, limit: Limit) -> Option<String> {
        let max = limit.bytes();
        if s.len() > max {
            self.reject(
                field,
                format!("is {} bytes, at most {max} allowed", s.len()),
            );
            return None;
        }
        Some(s)
    }

    /// Every problem found, if any.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Validates one JSON item in the seed's event format.
///
/// `item` is the item's index (for error messages), `source` where it came
/// from. All problems with the item are reported, not only the first.
pub fn parse_event(
    item: usize,
    value: &Value,
    source: &Arc<str>,
    received_at: i64,
) -> Result<Event, Vec<FieldError>> {
    let mut check = Checker::new(item);
    let Some(object) = value.as_object() else {
        check.reject(
            "",
            format!("expected a JSON object, got {}", json_kind(value)),
        );
        return Err(check.finish().err().unwrap_or_default());
    };
    // A string field's value; a value of another type is rejected here.
    let string = |check: &mut Checker, field: &str| -> Option<String> {
        match object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                check.reject(field, format!("must be a string, got {}", json_kind(other)));
                None
            }
        }
    };
    let text = |check: &mut Checker, field: &str, required: bool, limit: Limit| {
        let value = string(check, field);
        if required {
            check.required(field, value, limit)
        } else {
            check.optional(field, value, limit)
        }
    };
    let error_code = text(&mut check, "errorCode", true, Limit::Short);
    let message = text(&mut check, "message", true, Limit::Long);
    let service_name = text(&mut check, "serviceName", true, Limit::Short);
    let user_message = text(&mut check, "userMessage", false, Limit::Long);
    let user_id = text(&mut check, "userId", false, Limit::Short);
    let stack_trace = text(&mut check, "stackTrace", false, Limit::Long);
    let event_id = text(&mut check, "eventId", false, Limit::Short);
    let severity = text(&mut check, "severity", true, Limit::Short).and_then(|s| {
        let parsed = Severity::parse(&s);
        if parsed.is_none() {
            check.reject(
                "severity",
                format!("unknown severity {s:?} (use critical, high, medium or low)"),
            );
        }
        parsed
    });
    let timestamp = match object.get("timestamp") {
        None | Some(Value::Null) => Some(received_at),
        Some(v) => match parse_timestamp(v) {
            Ok(ts) => Some(ts),
            Err(reason) => {
                check.reject("timestamp", reason);
                None
            }
        },
    };
    let mut metadata = BTreeMap::new();
    match object.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                metadata.insert(k.clone(), v);
            }
        }
        Some(other) => check.reject(
            "metadata",
            format!("must be an object, got {}", json_kind(other)),
        ),
    }
    check.finish()?;
    match (error_code, severity, message, service_name, timestamp) {
        (Some(error_code), Some(severity), Some(message), Some(service_name), Some(timestamp)) => {
            let mut event = Event::new(
                source.clone(),
                error_code,
                severity,
                message,
                service_name,
                timestamp,
                received_at,
            );
            if let Some(id) = event_id {
                event.event_id = id;
                event.dedup = true;
            }
            event.user_message = user_message;
            event.user_id = user_id;
            event.stack_trace = stack_trace;
            event.metadata = metadata;
            Ok(event)
        }
        // Unreachable: a missing field was reported above.
        _ => Err(vec![FieldError {
            item,
            field: String::new(),
            reason: "incomplete event".into(),
        }]),
    }
}

/// Accepts epoch milliseconds (number) or an RFC 3339 string, as the seed's
/// NestJS services send `new Date().toISOString()`.
fn parse_timestamp(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| format!("number {n} is not a valid epoch-milliseconds time")),
        Value::String(s) => parse_rfc3339_ms(s),
        other => Err(format!(
            "must be epoch milliseconds or an RFC 3339 string, got {}",
            json_kind(other)
        )),
    }
}

/// How a JSON value's type reads in an error message (`a number`).
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a request body holding one event or an array of events.
///
/// All-or-nothing: if any item is invalid, every problem is returned and no
/// event is accepted, so a client never has to guess which half was taken.
pub fn parse_batch(
    body: &[u8],
    source: &Arc<str>,
    received_at: i64,
) -> Result<Vec<Event>, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        vec![FieldError {
            item: 0,
            field: String::new(),
            reason: format!("body is not valid JSON: {e}"),
        }]
    })?;
    let items: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match parse_event(i, item, source, received_at) {
            Ok(event) => events.push(event),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src() -> Arc<str> {
        Arc::from("test")
    }

    #[test]
    fn accepts_the_seed_format() {
        let v = json!({
            "errorCode": "DEVICE_START_FAILED", "severity": "HIGH", "message": "boom",
            "serviceName": "device-service", "timestamp": "2026-11-21T01:02:03.500Z",
            "userId": "u1", "metadata": {"deviceId": "d-9", "attempt": 3}
        });
        let e = parse_event(0, &v, &src(), 5).expect("valid");
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.timestamp, 1_795_222_923_500);
        assert_eq!(e.metadata.get("attempt").map(String::as_str), Some("3"));
        assert_eq!(e.received_at, 5);
        assert!(!e.event_id.is_empty());
    }

    #[test]
    fn reports_every_bad_field_with_its_item() {
        let body = br#"[{"errorCode":"A","severity":"high","message":"m","serviceName":"s"},
                        {"errorCode":"","severity":"urgent","message":3}]"#;
        let errors = parse_batch(body, &src(), 0).expect_err("invalid");
        let fields: Vec<(usize, &str)> =
            errors.iter().map(|e| (e.item, e.field.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                (1, "errorCode"),
                (1, "message"),
                (1, "serviceName"),
                (1, "severity")
            ]
        );
        assert!(errors[3].reason.contains("urgent"), "{}", errors[3]);
    }

    #[test]
    fn rejects_non_json_and_non_objects() {
        let errors = parse_batch(b"{nope", &src(), 0).expect_err("invalid");
        assert!(errors[0].reason.contains("not valid JSON"));
        let errors = parse_batch(b"[1]", &src(), 0).expect_err("invalid");
        assert!(errors[0].reason.contains("a number"));
    }
}
