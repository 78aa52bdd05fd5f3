//! Per-rule dedup: a rule counts an event once, however often it arrives.
//!
//! Why per rule and in state: a redelivered event (an AMQP message whose
//! ack was lost, a client retrying a POST, a replayed journal entry) must
//! not be counted twice by a rule that counted it, yet a rule added since
//! must still see it. So each rule marks the ids it counted
//! ([`crate::state::seen_key`], kept `[pipeline] dedup_ttl_ms`) in the
//! batch's own state scope: the marks commit or roll back with the
//! counters they guard. Only events whose id is stable across redeliveries
//! ([`Event::dedup`], see [`crate::event::id`]) are marked.
//!
//! The other dedup in tocsin is at intake and is a different question —
//! "has this source already sent this?" ([`crate::source::recent`]) —
//! answered before an event is queued.

use std::sync::Arc;

use crate::catalog::ActiveRule;
use crate::event::Event;
use crate::state::{seen_key, StateOps, StateView};

/// Loads the marks `rules` will look up for `events` in one go (one round
/// trip on shared state instead of one per event).
pub async fn prefetch(state: &StateView, rules: &[Arc<ActiveRule>], events: &[Event]) {
    let marks: Vec<String> = rules
        .iter()
        .flat_map(|r| {
            events
                .iter()
                .filter(|e| e.dedup && r.takes(e))
                .map(|e| seen_key(&r.name, &e.event_id))
        })
        .collect();
    state.prefetch(&marks).await;
}

/// Marks `event` as counted by `rule`; false when it already was (a
/// redelivery, to skip). Events without a stable id are always first.
pub async fn first(state: &StateView, rule: &ActiveRule, event: &Event, ttl_ms: u64) -> bool {
    if !event.dedup {
        return true;
    }
    state
        .set_if_absent(
            &seen_key(&rule.name, &event.event_id),
            String::new(),
            Some(ttl_ms),
        )
        .await
}

/// Forgets that `rule` counted `ids`: its aggregator failed on them, so a
/// redelivery must count them.
pub async fn unmark(state: &StateView, rule: &ActiveRule, ids: &[String]) {
    for id in ids {
        state.delete(&seen_key(&rule.name, id)).await;
    }
}
