//! Active alerts: what is firing now, per rule and alert key.
//!
//! Why in the state store: an active alert is written by the batch that
//! fired it, in that batch's own scope ([`crate::pipeline::active`]), so it
//! commits with the counters that made it fire — durable on the embedded
//! store, shared by every instance on Redis — and a redone batch never
//! leaves a half-recorded alert. An alert stays active until a resolution
//! for its key arrives (a Prometheus or Alertmanager alert resolved) or its
//! rule's `resolve-after` has passed since it last fired (the key's TTL).
//! A silenced alert is active too: it is firing, only not notified.
//!
//! `GET /api/v2/alerts` ([`crate::api::alerts`]) lists them in
//! Alertmanager's format, so `amtool alert query` works against tocsin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::event::format_rfc3339_ms;
use crate::plugin::bindings::Alert;
pub use crate::state::{active_key, ACTIVE_PREFIX};
use crate::state::{StateOps, StateStore, StateView};

/// The state key listing `rule`'s active alert keys for one error code
/// and service: how a resolution, which knows only those (and its
/// labels), finds the alerts it ends whatever the rule's aggregation key.
/// Under [`ACTIVE_PREFIX`] (so it goes with the rule), marked so listings
/// skip it.
fn index_key(rule: &str, code: &str, service: &str) -> String {
    active_key(rule, &format!("{INDEX_MARK}{code}|{service}"))
}

/// Marks index keys among active-alert keys.
const INDEX_MARK: char = '\u{1d}';

/// Labels a resolution carries that say nothing about which alert it ends.
const NOT_IDENTIFYING: &[&str] = &["status", "source", "endsAt", "fingerprint"];

/// One firing alert, as kept in state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub rule: String,
    pub key: String,
    /// Every label a silence or the API sees: the alert's own, plus
    /// `rule`, `severity` and `alertname` ([`crate::silence::alert_label`]).
    pub labels: BTreeMap<String, String>,
    pub title: String,
    pub summary: String,
    /// The count of its latest firing.
    pub count: u64,
    /// How often it fired while active.
    pub fired: u64,
    /// When it first fired (ms since the epoch).
    pub starts_at: i64,
    /// When it last fired.
    pub updated_at: i64,
    /// When it stops being active unless it fires again.
    pub ends_at: i64,
    /// Who said "I have it": while set, firing again is recorded, not
    /// notified; it ends with the alert (a resolution, `resolve-after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Ack>,
    /// How many of its rule's escalation steps have fired
    /// ([`crate::pipeline::escalate`]).
    #[serde(default)]
    pub escalated: u32,
}

/// An acknowledgement of an active alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    #[serde(default)]
    pub comment: String,
    /// When (ms since the epoch).
    pub at: i64,
}

impl ActiveAlert {
    /// The label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// A stable id of the alert (rule and key), as Alertmanager's
    /// fingerprint: 16 hex digits.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.rule, &self.key)
    }

    /// Alertmanager's `gettableAlert`, with the silences muting it now and
    /// the active alerts inhibiting it ([`crate::inhibit`]).
    pub fn to_api(&self, silenced_by: &[String], inhibited_by: &[String]) -> Value {
        let state = if silenced_by.is_empty() && inhibited_by.is_empty() {
            "active"
        } else {
            "suppressed"
        };
        json!({
            "labels": self.labels,
            "annotations": { "summary": self.summary, "title": self.title, "count": self.count.to_string() },
            "startsAt": format_rfc3339_ms(self.starts_at),
            "updatedAt": format_rfc3339_ms(self.updated_at),
            "endsAt": format_rfc3339_ms(self.ends_at),
            "fingerprint": self.fingerprint(),
            "key": self.key,
            "receivers": [{ "name": self.rule }],
            "status": { "state": state, "silencedBy": silenced_by, "inhibitedBy": inhibited_by },
            "generatorURL": "",
            "escalated": self.escalated,
            "acknowledged": self.acknowledged.as_ref().map(|a| json!({
                "by": a.by, "comment": a.comment, "at": format_rfc3339_ms(a.at),
            })),
        })
    }
}

impl ActiveAlert {
    /// The alert as channels render it, for escalation step `step` (its
    /// label `escalation`, and `[escalation N]` before its title).
    pub fn to_alert(&self, step: usize) -> Alert {
        let severity = self
            .label("severity")
            .and_then(crate::event::Severity::parse)
            .unwrap_or(crate::event::Severity::High);
        let mut labels: Vec<(String, String)> = self
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "rule" | "alertname"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.push(("escalation".into(), step.to_string()));
        Alert {
            key: self.key.clone(),
            rule: self.rule.clone(),
            count: self.count,
            first_seen: self.starts_at,
            last_seen: self.updated_at,
            severity: severity.into(),
            title: format!("[escalation {step}] {}", self.title),
            summary: self.summary.clone(),
            samples: Vec::new(),
            labels,
        }
    }
}

/// The fingerprint of `rule`'s alert `key` (see [`ActiveAlert::fingerprint`]).
pub fn fingerprint(rule: &str, key: &str) -> String {
    let hash = blake3::hash(format!("{rule}\u{1f}{key}").as_bytes());
    hash.to_hex()[..16].to_string()
}

/// The labels of `rule`'s `alert` as silences and the API see them.
pub fn labels_of(rule: &str, alert: &Alert) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = alert.labels.iter().cloned().collect();
    for name in ["rule", "severity", "alertname"] {
        if let Some(v) = crate::silence::alert_label(rule, alert, name) {
            labels
                .entry(name.to_string())
                .or_insert_with(|| v.to_string());
        }
    }
    labels
}

/// Records that `rule`'s `alert` fired at `now`, active for `ttl_ms` more;
/// its acknowledgement, if it is acknowledged (then it is not notified).
pub async fn fired(
    view: &StateView,
    rule: &str,
    alert: &Alert,
    now: i64,
    ttl_ms: u64,
) -> Option<Ack> {
    let key = active_key(rule, &alert.key);
    let before: Option<ActiveAlert> = view
        .get(&key)
        .await
        .and_then(|t| serde_json::from_str(&t).ok());
    let record = ActiveAlert {
        rule: rule.to_string(),
        key: alert.key.clone(),
        labels: labels_of(rule, alert),
        title: alert.title.clone(),
        summary: alert.summary.clone(),
        count: alert.count,
        fired: before.as_ref().map_or(0, |b| b.fired) + 1,
        starts_at: before.as_ref().map_or(now, |b| b.starts_at),
        updated_at: now,
        ends_at: now.saturating_add(ttl_ms as i64),
        escalated: before.as_ref().map_or(0, |b| b.escalated),
        acknowledged: before.and_then(|b| b.acknowledged),
    };
    let ack = record.acknowledged.clone();
    let index = match (record.label("error-code"), record.label("service")) {
        (Some(code), Some(service)) => Some(index_key(rule, code, service)),
        _ => None,
    };
    match serde_json::to_string(&record) {
        Ok(text) => view.set(&key, text, Some(ttl_ms)).await,
        Err(e) => tracing::warn!(rule, error = %e, "cannot record an active alert"),
    }
    if let Some(index) = index {
        let mut keys = read_index(view, &index).await;
        if !keys.contains(&alert.key) {
            keys.push(alert.key.clone());
        }
        write_index(view, &index, &keys, Some(ttl_ms)).await;
    }
    ack
}

/// Sets (`Some`) or clears (`None`) the acknowledgement of the active
/// alert `fingerprint`, atomically with the batches that fire it; the
/// alert as it is now, or `None` when no active alert has that
/// fingerprint.
pub async fn acknowledge(
    store: &StateStore,
    fingerprint: &str,
    ack: Option<Ack>,
) -> Result<Option<ActiveAlert>, String> {
    let Some(found) = list(store)
        .await?
        .into_iter()
        .find(|a| a.fingerprint() == fingerprint)
    else {
        return Ok(None);
    };
    let key = active_key(&found.rule, &found.key);
    Ok(store
        .update(&key, move |slot, now| {
            let Some(entry) = slot.as_mut() else {
                return (None, false);
            };
            if entry.expires_at.is_some_and(|t| t <= now) {
                return (None, false);
            }
            let crate::state::ops::Value::Text(text) = &mut entry.value else {
                return (None, false);
            };
            let Ok(mut record) = serde_json::from_str::<ActiveAlert>(text) else {
                return (None, false);
            };
            record.acknowledged = ack;
            match serde_json::to_string(&record) {
                Ok(t) => {
                    *text = t;
                    (Some(record), true)
                }
                Err(_) => (None, false),
            }
        })
        .await)
}

async fn read_index(view: &StateView, index: &str) -> Vec<String> {
    view.get(index)
        .await
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

async fn write_index(view: &StateView, index: &str, keys: &[String], ttl_ms: Option<u64>) {
    if keys.is_empty() {
        view.delete(index).await;
        return;
    }
    if let Ok(text) = serde_json::to_string(keys) {
        view.set(index, text, ttl_ms).await;
    }
}

/// Ends the active alerts of `rule` that the resolution `resolution` (see
/// [`crate::pipeline::resolve`]) stands for; returns their keys (none: it
/// resolves nothing that fired). An alert is ended when it has the
/// resolution's key, or when it was indexed under the resolution's error
/// code and service and agrees with every other label both carry (say, a
/// receiver that is part of the rule's key). `ttl_ms`: the rule's
/// `resolve-after`, for what stays indexed.
pub async fn resolved(
    view: &StateView,
    rule: &str,
    resolution: &Alert,
    ttl_ms: u64,
) -> Vec<String> {
    let label = |name: &str| {
        resolution
            .labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut ended = Vec::new();
    let direct = active_key(rule, &resolution.key);
    if view.get(&direct).await.is_some() {
        view.delete(&direct).await;
        ended.push(resolution.key.clone());
    }
    let (Some(code), Some(service)) = (label("error-code"), label("service")) else {
        return ended;
    };
    let index = index_key(rule, code, service);
    let keys = read_index(view, &index).await;
    let mut kept = Vec::new();
    for key in keys {
        if ended.contains(&key) {
            continue;
        }
        let state_key = active_key(rule, &key);
        let record: Option<ActiveAlert> = view
            .get(&state_key)
            .await
            .and_then(|t| serde_json::from_str(&t).ok());
        let Some(record) = record else { continue }; // expired: drop it from the index
        let agrees = resolution
            .labels
            .iter()
            .filter(|(k, _)| !NOT_IDENTIFYING.contains(&k.as_str()))
            .all(|(k, v)| record.label(k).is_none_or(|mine| mine == v));
        if agrees {
            view.delete(&state_key).await;
            ended.push(key);
        } else {
            kept.push(key);
        }
    }
    write_index(view, &index, &kept, Some(ttl_ms)).await;
    ended
}

/// Every active alert, oldest first.
pub async fn list(store: &StateStore) -> Result<Vec<ActiveAlert>, String> {
    let mut out: Vec<ActiveAlert> = store
        .texts_with_prefix(ACTIVE_PREFIX)
        .await?
        .into_iter()
        .filter(|(k, _)| {
            !k.strip_prefix(ACTIVE_PREFIX)
                .and_then(|rest| rest.split_once('\u{1f}'))
                .is_some_and(|(_, key)| key.starts_with(INDEX_MARK))
        })
        .filter_map(|(k, text)| match serde_json::from_str(&text) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(key = %k.escape_debug(), error = %e, "skipping an unreadable active alert");
                None
            }
        })
        .collect();
    out.sort_by(|a, b| (a.starts_at, &a.rule, &a.key).cmp(&(b.starts_at, &b.rule, &b.key)));
    Ok(out)
}
