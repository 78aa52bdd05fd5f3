//! An Alertmanager alert as a tocsin event: see the mapping in the module
//! documentation of [`super`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::SOURCE;
use crate::event::{json_kind, Checker, Event, FieldError, Limit, Severity};

/// One alert as posted.
#[derive(Debug)]
pub(super) struct RawAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// `startsAt` in epoch ms; `None` when absent or Go's zero time.
    starts_at: Option<i64>,
    /// `endsAt` as given, when set (not zero).
    ends_at: Option<String>,
    generator_url: Option<String>,
    fingerprint: String,
    resolved: bool,
}

/// A valid alert as an event: a new error, or the end of one (`resolved`
/// set, see [`crate::pipeline::resolve`]).
pub struct Parsed {
    /// The alert's id ([`stable_id`]) whatever its state: what re-sends
    /// are recognised by.
    pub alert_id: String,
    pub event: Event,
}

/// Reads `items` as alerts (`webhook`: in the webhook payload's shape,
/// with `extra` labels): the valid ones as events, and every error of the
/// others. Pure, so the fuzzer (`fuzz/`) drives exactly what a request
/// does.
pub fn parse_alerts(
    items: &[Value],
    webhook: bool,
    extra: &[(String, String)],
    received_at: i64,
) -> (Vec<Parsed>, Vec<FieldError>) {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match read_alert(i, item, received_at, webhook)
            .and_then(|a| a.classify(i, received_at, extra))
        {
            Ok(p) => parsed.push(p),
            Err(mut e) => errors.append(&mut e),
        }
    }
    (parsed, errors)
}

/// Reads the shape of item `i`; `webhook` items carry `status` and
/// `fingerprint`.
pub(super) fn read_alert(
    i: usize,
    value: &Value,
    now: i64,
    webhook: bool,
) -> Result<RawAlert, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, reason: String| {
        errors.push(FieldError {
            item: i,
            field: field.into(),
            reason,
        })
    };
    let Some(object) = value.as_object() else {
        err(
            "",
            format!("expected an alert object, got {}", json_kind(value)),
        );
        return Err(errors);
    };
    let mut string_map = |field: &str, required: bool| -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match object.get(field) {
            None | Some(Value::Null) if !required => {}
            None | Some(Value::Null) => err(field, "is required".into()),
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        other => err(
                            &format!("{field}.{k}"),
                            format!("must be a string, got {}", json_kind(other)),
                        ),
                    }
                }
                if required && map.is_empty() {
                    err(field, "must not be empty".into());
                }
            }
            Some(other) => err(
                field,
                format!("must be an object, got {}", json_kind(other)),
            ),
        }
        out
    };
    let labels = string_map("labels", true);
    let annotations = string_map("annotations", false);
    let mut time_field = |field: &str| -> Option<(i64, String)> {
        match object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => match parse_time(s) {
                Ok(ms) if ms < 0 => None, // Go's zero time: unset
                Ok(ms) => Some((ms, s.clone())),
                Err(reason) => {
                    err(field, reason);
                    None
                }
            },
            Some(other) => {
                err(
                    field,
                    format!("must be an RFC 3339 string, got {}", json_kind(other)),
                );
                None
            }
        }
    };
    let starts_at = time_field("startsAt").map(|(ms, _)| ms);
    let ends_at = time_field("endsAt");
    let generator_url = match object.get("generatorURL") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            err(
                "generatorURL",
                format!("must be a string, got {}", json_kind(other)),
            );
            None
        }
    };
    let ends_in_past = ends_at.as_ref().is_some_and(|(ms, _)| *ms <= now);
    let mut fingerprint = None;
    let mut resolved = ends_in_past;
    if webhook {
        match object.get("status") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "firing" => resolved = false,
            Some(Value::String(s)) if s == "resolved" => resolved = true,
            Some(other) => err(
                "status",
                format!("must be \"firing\" or \"resolved\", got {other}"),
            ),
        }
        match object.get("fingerprint") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !s.is_empty() => fingerprint = Some(s.clone()),
            Some(Value::String(_)) => {}
            Some(other) => err(
                "fingerprint",
                format!("must be a string, got {}", json_kind(other)),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let fingerprint = fingerprint.unwrap_or_else(|| label_fingerprint(&labels));
    Ok(RawAlert {
        labels,
        annotations,
        starts_at,
        ends_at: ends_at.map(|(_, s)| s),
        generator_url,
        fingerprint,
        resolved,
    })
}

impl RawAlert {
    /// Maps the alert to an event (checked by [`Checker`], errors named by
    /// the alert's fields) and, when resolved, to a resolution instead.
    pub(super) fn classify(
        self,
        item: usize,
        received_at: i64,
        extra: &[(String, String)],
    ) -> Result<Parsed, Vec<FieldError>> {
        let mut labels = self.labels.clone();
        let mut annotations = self.annotations.clone();
        let alertname = labels.remove("alertname");
        let (severity, unknown_severity) = match labels.remove("severity") {
            None => (Severity::Medium, None),
            Some(s) => match map_severity(&s) {
                Some(sev) => (sev, None),
                None => (Severity::Medium, Some(s)),
            },
        };
        if let Some(raw) = unknown_severity {
            labels.insert("severity".into(), raw);
        }
        let service_label = ["service", "job", "instance"]
            .into_iter()
            .find(|l| labels.contains_key(*l));
        let service = service_label
            .and_then(|l| labels.remove(l))
            .unwrap_or_else(|| "prometheus".into());
        let summary = annotations.remove("summary");
        let description = annotations.remove("description");
        let (message, message_field, user_message) = match (summary, description) {
            (Some(s), d) => (Some(s), "annotations.summary", d),
            (None, Some(d)) => (Some(d), "annotations.description", None),
            // `amtool alert add ... summary="..."` makes it a label.
            (None, None) => match (labels.remove("summary"), labels.remove("description")) {
                (Some(s), d) => (Some(s), "labels.summary", d),
                (None, Some(d)) => (Some(d), "labels.description", None),
                (None, None) => (alertname.clone(), "labels.alertname", None),
            },
        };

        let mut check = Checker::new(item);
        let service_field = format!("labels.{}", service_label.unwrap_or("service"));
        let error_code = check.required("labels.alertname", alertname, Limit::Short);
        let message = check.required(message_field, message, Limit::Long);
        let service = check.required(&service_field, Some(service), Limit::Short);
        let user_message = check.optional("annotations.description", user_message, Limit::Long);
        check.finish()?;
        let (Some(error_code), Some(message), Some(service)) = (error_code, message, service)
        else {
            return Err(Vec::new()); // reported by the checker
        };
        let mut event = Event::new(
            Arc::from(SOURCE),
            error_code,
            severity,
            message,
            service,
            self.starts_at.unwrap_or(received_at),
            received_at,
        );
        event.event_id = stable_id(&self.fingerprint, self.starts_at.unwrap_or(0));
        event.dedup = true;
        event.user_message = user_message;
        let metadata = &mut event.metadata;
        for (k, v) in labels {
            metadata.insert(k, v);
        }
        for (k, v) in annotations {
            metadata.insert(format!("annotation.{k}"), v);
        }
        if let Some(url) = &self.generator_url {
            metadata.insert("generatorURL".into(), url.clone());
        }
        metadata.insert("fingerprint".into(), self.fingerprint.clone());
        for (k, v) in extra {
            metadata.insert(k.clone(), v.clone());
        }
        let alert_id = event.event_id.clone();
        if self.resolved {
            event.resolved = true;
            event.event_id = resolution_id(&self.fingerprint, self.starts_at.unwrap_or(0));
            if let Some(ends_at) = self.ends_at {
                event.metadata.insert("endsAt".into(), ends_at);
            }
        }
        Ok(Parsed { alert_id, event })
    }
}

/// Maps Prometheus severity labels onto tocsin's four levels.
fn map_severity(label: &str) -> Option<Severity> {
    Severity::parse(label).or(match label.to_ascii_lowercase().as_str() {
        "error" => Some(Severity::High),
        "warning" | "warn" => Some(Severity::Medium),
        "info" | "none" => Some(Severity::Low),
        _ => None,
    })
}

/// Prometheus's fingerprint of a label set (`model.LabelSet.Fingerprint`):
/// FNV-1a 64 over the sorted names and values, each followed by `0xff`,
/// printed as 16 hex digits — the `fingerprint` Alertmanager shows.
pub fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in labels {
        add(k.as_bytes());
        add(&[0xff]);
        add(v.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// A stable event id (UUID v8) for the alert `fingerprint` that started at
/// `starts_at` (epoch ms, 0 when unknown).
pub fn stable_id(fingerprint: &str, starts_at: i64) -> String {
    crate::event::id::derived(&["alertmanager", fingerprint, &starts_at.to_string()])
}

/// The id of the resolution of the alert [`stable_id`] names: another id,
/// so a rule that counted the alert still takes its end.
pub fn resolution_id(fingerprint: &str, starts_at: i64) -> String {
    crate::event::id::derived(&["alertmanager-resolved", fingerprint, &starts_at.to_string()])
}

fn parse_time(s: &str) -> Result<i64, String> {
    crate::event::parse_rfc3339_ms(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: &Value, webhook: bool) -> Result<Parsed, Vec<FieldError>> {
        let now = 1_800_000_000_000;
        read_alert(0, v, now, webhook).and_then(|a| a.classify(0, now, &[]))
    }

    fn firing(p: Parsed) -> Event {
        assert!(!p.event.resolved, "expected a firing alert");
        p.event
    }

    #[test]
    fn fingerprint_matches_prometheus() {
        // Prometheus's empty label signature (the FNV-64 offset basis).
        assert_eq!(label_fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        // As Alertmanager 0.25 reported for this label set.
        let labels = BTreeMap::from([
            ("alertname".to_string(), "DiskFull".to_string()),
            ("service".to_string(), "db".to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]);
        assert_eq!(label_fingerprint(&labels), "0a74ac22130028d9");
    }

    #[test]
    fn maps_labels_and_annotations() {
        let v = json!({
            "labels": {"alertname": "DiskFull", "severity": "warning", "job": "node", "instance": "db1:9100", "mount": "/"},
            "annotations": {"summary": "disk / is 95% full", "description": "grow it", "runbook": "http://rb"},
            "startsAt": "2027-01-15T08:00:00.5Z",
            "generatorURL": "http://prom/graph?g0.expr=x"
        });
        let e = firing(parse(&v, false).expect("valid"));
        assert_eq!(e.error_code, "DiskFull");
        assert_eq!(e.severity, Severity::Medium);
        assert_eq!(e.service_name, "node");
        assert_eq!(e.message, "disk / is 95% full");
        assert_eq!(e.user_message.as_deref(), Some("grow it"));
        // 2027-01-15T08:00:00Z is 1_800_000_000_000.
        assert_eq!(e.timestamp, 1_800_000_000_500);
        assert_eq!(&*e.source, "alertmanager");
        let md = |k: &str| e.metadata.get(k).map(String::as_str);
        assert_eq!(md("instance"), Some("db1:9100"));
        assert_eq!(md("mount"), Some("/"));
        assert_eq!(md("annotation.runbook"), Some("http://rb"));
        assert_eq!(md("generatorURL"), Some("http://prom/graph?g0.expr=x"));
        assert_eq!(md("alertname"), None);
        assert_eq!(md("job"), None);
        assert_eq!(md("annotation.summary"), None);
    }

    #[test]
    fn defaults_and_severity_words() {
        for (label, want) in [
            ("critical", Severity::Critical),
            ("error", Severity::High),
            ("HIGH", Severity::High),
            ("warning", Severity::Medium),
            ("info", Severity::Low),
            ("none", Severity::Low),
            ("page", Severity::Medium),
        ] {
            let v = json!({"labels": {"alertname": "A", "severity": label}});
            let e = firing(parse(&v, false).expect("valid"));
            assert_eq!(e.severity, want, "{label}");
            assert_eq!(e.service_name, "prometheus");
            assert_eq!(e.message, "A");
            if label == "page" {
                assert_eq!(e.metadata.get("severity").map(String::as_str), Some("page"));
            }
        }
        let v = json!({"labels": {"alertname": "A", "service": "db", "job": "j"}, "annotations": {"description": "d"}});
        let e = firing(parse(&v, false).expect("valid"));
        assert_eq!((e.service_name.as_str(), e.message.as_str()), ("db", "d"));
        assert_eq!(e.user_message, None);
        assert_eq!(e.metadata.get("job").map(String::as_str), Some("j"));
        // Without annotations, `summary` / `description` labels (amtool).
        let v = json!({"labels": {"alertname": "A", "summary": "s", "description": "d"}});
        let e = firing(parse(&v, false).expect("valid"));
        assert_eq!(
            (e.message.as_str(), e.user_message.as_deref()),
            ("s", Some("d"))
        );
        assert!(!e.metadata.contains_key("summary"));
    }

    #[test]
    fn same_alert_same_id_and_resolution() {
        let firing_v = json!({"labels": {"alertname": "A", "service": "db"}, "startsAt": "2027-01-15T08:00:00Z"});
        let again = json!({"labels": {"service": "db", "alertname": "A"}, "startsAt": "2027-01-15T08:00:00.000Z", "endsAt": "2099-01-01T00:00:00Z"});
        let a = firing(parse(&firing_v, false).expect("valid"));
        let b = firing(parse(&again, false).expect("valid"));
        assert_eq!(a.event_id, b.event_id);
        let later = json!({"labels": {"alertname": "A", "service": "db"}, "startsAt": "2027-01-15T09:00:00Z"});
        assert_ne!(
            a.event_id,
            firing(parse(&later, false).expect("valid")).event_id
        );

        let resolved = json!({"labels": {"alertname": "A", "service": "db", "severity": "critical"}, "startsAt": "2027-01-15T07:00:00Z", "endsAt": "2027-01-15T07:30:00Z"});
        let r = parse(&resolved, false).expect("valid");
        assert!(r.event.resolved, "endsAt in the past is a resolution");
        assert_eq!(r.event.severity, Severity::Critical);
        assert_eq!(r.event.service_name, "db");
        assert_eq!(r.event.error_code, "A");
        assert_eq!(r.event.metadata["endsAt"], "2027-01-15T07:30:00Z");
        let same_firing = json!({"labels": {"alertname": "A", "service": "db", "severity": "critical"}, "startsAt": "2027-01-15T07:00:00Z"});
        let f = firing(parse(&same_firing, false).expect("valid"));
        assert_eq!(
            r.alert_id, f.event_id,
            "re-sends are recognised by the alert's id"
        );
        assert_ne!(
            r.event.event_id, r.alert_id,
            "a resolution has its own event id"
        );
        // Go's zero time means unset (amtool sends it).
        let zero = json!({"labels": {"alertname": "A"}, "startsAt": "0001-01-01T00:00:00.000Z", "endsAt": "0001-01-01T00:00:00.000Z"});
        let e = firing(parse(&zero, false).expect("valid"));
        assert_eq!(e.timestamp, 1_800_000_000_000);
    }

    #[test]
    fn webhook_status_and_fingerprint() {
        let v = json!({"status": "resolved", "labels": {"alertname": "A"}, "fingerprint": "abc",
                       "startsAt": "2027-01-15T08:00:00Z", "endsAt": "2099-01-01T00:00:00Z"});
        assert!(parse(&v, true).is_ok_and(|p| p.event.resolved));
        let v = json!({"status": "firing", "labels": {"alertname": "A"}, "fingerprint": "abc",
                       "startsAt": "2027-01-15T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z"});
        let e = firing(parse(&v, true).expect("valid"));
        assert_eq!(e.event_id, stable_id("abc", 1_800_000_000_000));
        assert_eq!(
            e.metadata.get("fingerprint").map(String::as_str),
            Some("abc")
        );
    }

    #[test]
    fn errors_name_item_and_field() {
        let v = json!({"labels": {"severity": "high", "n": 3}, "startsAt": "yesterday"});
        let errors = read_alert(4, &v, 0, false).expect_err("invalid");
        let fields: Vec<(usize, &str)> =
            errors.iter().map(|e| (e.item, e.field.as_str())).collect();
        assert_eq!(fields, vec![(4, "labels.n"), (4, "startsAt")]);
        let v = json!({"labels": {"severity": "high"}});
        let errors = parse(&v, false).err().expect("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["labels.alertname"]);
        let errors = parse(&json!({"labels": {}}), false).err().expect("invalid");
        assert_eq!(errors[0].field, "labels");
    }
}
