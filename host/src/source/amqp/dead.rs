//! What a dead letter says about itself: the headers tocsin writes when it
//! gives up on a message, the ones a replay writes, and [`DeadLetter`],
//! the description `tocsin dlq` lists. One place names every header.

use std::collections::BTreeMap;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde::Serialize;

use crate::pipeline::Failure;

/// `x-tocsin-reason` of a body that is not a valid event.
pub const MALFORMED: &str = "malformed";
/// `x-tocsin-reason` of an event a rule failed on `max_retries` times.
pub const FAILED: &str = "processing-failed";

/// Why tocsin gave up: [`MALFORMED`] or [`FAILED`].
pub const REASON: &str = "x-tocsin-reason";
/// The last error.
pub const ERROR: &str = "x-tocsin-error";
/// The routing key it was first published with (a replay uses it).
pub const ROUTING_KEY: &str = "x-tocsin-routing-key";
/// A stable id for `tocsin dlq` (kept across replays).
pub const ID: &str = "x-tocsin-dead-id";
/// When it was dead-lettered (ms since the epoch).
pub const DEAD_AT: &str = "x-tocsin-dead-at";
/// The rules that failed on it: a table of rule name → version.
pub const RULES: &str = "x-tocsin-rules";
/// Set by a replay: the only rules that take it (comma-separated).
pub const ONLY_RULES: &str = "x-tocsin-only-rules";
/// Set by a replay: how many times it was replayed.
pub const REPLAYS: &str = "x-tocsin-replays";
/// Set by a replay: when (ms since the epoch).
pub const RECOVERED_AT: &str = "x-tocsin-recovered-at";
/// Set by a replay: who (`recovery`, or the admin who asked).
pub const RECOVERED_BY: &str = "x-tocsin-recovered-by";

fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

/// The headers of `d`'s dead letter: its own, plus why, when, and which
/// rules failed on it. A letter replayed before keeps its id.
pub fn headers(d: &Delivery, reason: &str, error: &str, failure: Option<&Failure>) -> FieldTable {
    let mut h = d.properties.headers().clone().unwrap_or_default();
    let keep_id = string(&h, ID);
    h.insert(REASON.into(), text(reason));
    h.insert(ERROR.into(), text(error));
    h.insert(ROUTING_KEY.into(), text(d.routing_key.as_str()));
    let id = keep_id.unwrap_or_else(crate::event::id::fresh);
    h.insert(ID.into(), text(&id));
    h.insert(
        DEAD_AT.into(),
        AMQPValue::LongLongInt(crate::event::now_ms()),
    );
    let mut rules = FieldTable::default();
    for (name, version) in failure.map(|f| f.rules.as_slice()).unwrap_or_default() {
        rules.insert(ShortString::from(name.to_string()), text(version));
    }
    h.insert(RULES.into(), AMQPValue::FieldTable(rules));
    h
}

/// The headers a replay publishes `letter` with: the original ones less
/// the dead-letter and retry history (a fresh delivery count), marked
/// recovered, and meant for the rules that failed on it only.
pub fn replay_headers(d: &Delivery, letter: &DeadLetter, by: &str) -> FieldTable {
    let mut h = FieldTable::default();
    let history = [
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        REASON,
        ERROR,
        ONLY_RULES,
    ];
    for (k, v) in d.properties.headers().iter().flat_map(|t| t.inner()) {
        if !history.contains(&k.as_str()) {
            h.insert(k.clone(), v.clone());
        }
    }
    h.insert(
        REPLAYS.into(),
        AMQPValue::LongLongInt(letter.replays as i64 + 1),
    );
    h.insert(
        RECOVERED_AT.into(),
        AMQPValue::LongLongInt(crate::event::now_ms()),
    );
    h.insert(RECOVERED_BY.into(), text(by));
    if !letter.rules.is_empty() {
        h.insert(ONLY_RULES.into(), text(&letter.rules.join(",")));
    }
    h
}

/// The rules a replayed message is meant for, if it says.
pub fn only_rules(d: &Delivery) -> Option<Vec<String>> {
    let h = d.properties.headers().as_ref()?;
    let list = string(h, ONLY_RULES)?;
    Some(list.split(',').map(str::to_string).collect())
}

/// A dead letter as `tocsin dlq list` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Its `x-tocsin-dead-id`, else a hash of its body.
    pub id: String,
    pub reason: String,
    pub error: String,
    pub routing_key: String,
    /// The rules that failed on it (empty for a malformed body).
    pub rules: Vec<String>,
    /// When it was dead-lettered, if it says.
    pub dead_at: Option<i64>,
    /// Its age at the listing, from `dead_at`.
    pub age_ms: Option<u64>,
    /// Rounds in the retry loop, from `x-death`.
    pub deaths: u64,
    /// Times it was replayed before.
    pub replays: u64,
    /// The event's fields, when the body is a JSON object that has them.
    pub event_id: Option<String>,
    pub error_code: Option<String>,
    pub service_name: Option<String>,
    pub bytes: usize,
    /// The body's start (200 bytes), lossy UTF-8.
    pub preview: String,
    /// The versions of [`Self::rules`] that failed.
    #[serde(skip)]
    pub versions: BTreeMap<String, String>,
}

impl DeadLetter {
    /// Describes the dead letter `d`, as of `now` (ms).
    pub fn of(d: &Delivery, now: i64) -> Self {
        let empty = FieldTable::default();
        let h = d.properties.headers().as_ref().unwrap_or(&empty);
        let versions: BTreeMap<String, String> = match h.inner().get(RULES) {
            Some(AMQPValue::FieldTable(t)) => t
                .inner()
                .iter()
                .map(|(k, v)| (k.to_string(), value_text(v).unwrap_or_default()))
                .collect(),
            _ => BTreeMap::new(),
        };
        let dead_at = int(h, DEAD_AT);
        let body: Option<serde_json::Value> = serde_json::from_slice(&d.data).ok();
        let field = |name: &str| {
            body.as_ref()
                .and_then(|b| b.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let cut = d.data.len().min(200);
        Self {
            id: string(h, ID).unwrap_or_else(|| crate::event::id::of_bytes(&d.data)),
            reason: string(h, REASON).unwrap_or_default(),
            error: string(h, ERROR).unwrap_or_default(),
            routing_key: string(h, ROUTING_KEY).unwrap_or_else(|| d.routing_key.to_string()),
            rules: versions.keys().cloned().collect(),
            dead_at,
            age_ms: dead_at.map(|t| (now - t).max(0) as u64),
            deaths: rounds(h, |_| true),
            replays: int(h, REPLAYS).unwrap_or(0).max(0) as u64,
            event_id: field("eventId"),
            error_code: field("errorCode"),
            service_name: field("serviceName"),
            bytes: d.data.len(),
            preview: String::from_utf8_lossy(&d.data[..cut]).into_owned(),
            versions,
        }
    }
}

fn value_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// A text field of a header table (or of an `x-death` entry).
pub fn string(h: &FieldTable, key: &str) -> Option<String> {
    h.inner().get(key).and_then(value_text)
}

fn int(h: &FieldTable, key: &str) -> Option<i64> {
    match h.inner().get(key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// The rounds `x-death` counts in the entries `keep` chooses (RabbitMQ
/// keeps one entry per queue and reason, with its count).
pub fn rounds(h: &FieldTable, keep: impl Fn(&FieldTable) -> bool) -> u64 {
    let Some(AMQPValue::FieldArray(list)) = h.inner().get("x-death") else {
        return 0;
    };
    list.as_slice()
        .iter()
        .filter_map(|v| match v {
            AMQPValue::FieldTable(t) if keep(t) => Some(int(t, "count").unwrap_or(1).max(0) as u64),
            _ => None,
        })
        .sum()
}
