//! Who did what: every operator action (a request that changes something
//! through the admin surface — silences, acknowledgements, replays) is
//! recorded with when, who, what and how it ended, so an incident review
//! can read who muted the pager at 03:12.
//!
//! Kept in the state store as one list of the newest [`KEEP`] entries —
//! on the embedded store it survives restarts, on Redis every instance
//! records into and lists the same log — and written to the log
//! (`tracing`, target `tocsin::audit`). Recorded by one middleware in
//! front of the admin routes ([`crate::api::audit`]), so no endpoint can
//! forget to. Who: the `X-Tocsin-User` header (the CLI sends the login
//! name), else the `by` or `createdBy` the body names, else `unknown`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::ops::{Entry as StateEntry, Value as StateValue};
use crate::state::{StateOps, StateStore};

/// The state key of the log; host keys start with `\u{1e}`, which no
/// rule name holds.
pub const AUDIT_KEY: &str = "\u{1e}audit";
/// How many entries are kept (the oldest go first).
pub const KEEP: usize = 500;
/// How much of a request or answer body an entry keeps.
pub const BODY_BYTES: usize = 1024;

/// One action.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (ms since the epoch).
    pub at: i64,
    /// Who (see the module documentation).
    pub actor: String,
    /// `POST /api/v2/silences`, `DELETE /v1/alerts/…/ack`…
    pub action: String,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// The request body, as JSON when it is JSON (cut to [`BODY_BYTES`]).
    pub request: Value,
    /// The answer, likewise (a new silence's id, say).
    pub answer: Value,
}

/// A body as an entry keeps it: its JSON, or its text cut to
/// [`BODY_BYTES`] (on a character boundary).
pub fn body_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if bytes.len() <= BODY_BYTES {
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            return v;
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let mut end = text.len().min(BODY_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < text.len() { "…" } else { "" };
    Value::String(format!("{}{cut}", &text[..end]))
}

/// Who `request` says acted: a `by` or `createdBy` field.
pub fn actor_in(request: &Value) -> Option<String> {
    ["by", "createdBy"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// Appends `entry` to the log (dropping the oldest past [`KEEP`]).
pub async fn record(store: &StateStore, entry: AuditEntry) {
    tracing::info!(target: "tocsin::audit", actor = %entry.actor, action = %entry.action, status = entry.status, request = %entry.request, "operator action");
    let Ok(text) = serde_json::to_string(&entry) else {
        return;
    };
    store
        .update(AUDIT_KEY, move |slot, _| {
            let mut items = match slot.take() {
                Some(StateEntry {
                    value: StateValue::List(items),
                    ..
                }) => items,
                _ => Vec::new(),
            };
            items.push(text);
            if items.len() > KEEP {
                items.drain(..items.len() - KEEP);
            }
            *slot = Some(StateEntry {
                value: StateValue::List(items),
                expires_at: None,
            });
            ((), true)
        })
        .await
}

/// The newest `limit` entries, newest first.
pub async fn list(store: &StateStore, limit: usize) -> Vec<AuditEntry> {
    let items: Vec<String> = store
        .update(AUDIT_KEY, |slot, _| match slot {
            Some(StateEntry {
                value: StateValue::List(items),
                ..
            }) => (items.clone(), false),
            _ => (Vec::new(), false),
        })
        .await;
    items
        .iter()
        .rev()
        .take(limit)
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_kept_small_and_actors_found() {
        assert_eq!(body_value(b"{\"by\":\"ann\"}")["by"], "ann");
        let big = "é".repeat(BODY_BYTES);
        let kept = body_value(big.as_bytes());
        let s = kept.as_str().unwrap_or_default();
        assert!(
            s.len() <= BODY_BYTES + '…'.len_utf8() && s.ends_with('…'),
            "{}",
            s.len()
        );
        assert_eq!(body_value(b""), Value::Null);
        let req = serde_json::json!({"createdBy": "bob", "comment": "x"});
        assert_eq!(actor_in(&req).as_deref(), Some("bob"));
        assert_eq!(actor_in(&serde_json::json!({"by": " "})), None);
    }
}
