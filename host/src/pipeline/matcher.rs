//! Stage 1: which rules take which events.
//!
//! A rule that already counted an event skips it
//! (`tocsin_events_duplicate_total`; see [`super::dedup`]).

use std::sync::Arc;

use crate::catalog::{ActiveRule, Generation};
use crate::event::Event;
use crate::plugin::bindings::ErrorEvent;
use crate::state::StateView;

/// The events one rule takes from a batch.
pub struct Matched {
    /// Errors, for the aggregator.
    pub events: Vec<ErrorEvent>,
    /// Resolved alerts, which the aggregator does not count (see
    /// [`super::resolve`]).
    pub resolutions: Vec<ErrorEvent>,
    /// Ids of `events` this batch marked as counted by the rule (to unmark
    /// when the aggregator fails).
    pub marked: Vec<String>,
    /// Ids the rule had already counted (redeliveries), skipped.
    pub duplicates: Vec<String>,
}

/// The enabled rules that take at least one of `events`: the rules a batch
/// must lock on shared state.
pub fn rules_for(g: &Generation, events: &[Event]) -> Vec<Arc<ActiveRule>> {
    g.rules
        .iter()
        .filter(|r| r.enabled && events.iter().any(|e| r.takes(e)))
        .cloned()
        .collect()
}

/// Groups `events` by `rules` (from [`rules_for`]), keeping order. An event
/// matched by several rules goes to each.
pub async fn match_batch(
    rules: &[Arc<ActiveRule>],
    events: &[Event],
    state: &StateView,
    dedup_ttl_ms: u64,
) -> Vec<(Arc<ActiveRule>, Matched)> {
    super::dedup::prefetch(state, rules, events).await;
    let mut out = Vec::new();
    for rule in rules {
        let mut matched = Matched {
            events: Vec::new(),
            resolutions: Vec::new(),
            marked: Vec::new(),
            duplicates: Vec::new(),
        };
        for e in events.iter().filter(|e| rule.takes(e)) {
            if !super::dedup::first(state, rule, e, dedup_ttl_ms).await {
                matched.duplicates.push(e.event_id.clone());
                continue;
            }
            if e.dedup && !e.resolved {
                matched.marked.push(e.event_id.clone());
            }
            if e.resolved {
                matched.resolutions.push(ErrorEvent::from(e));
            } else {
                matched.events.push(ErrorEvent::from(e));
            }
        }
        if !matched.duplicates.is_empty() {
            metrics::counter!("tocsin_events_duplicate_total", "rule" => rule.name.to_string())
                .increment(matched.duplicates.len() as u64);
        }
        let taken = matched.events.len() + matched.resolutions.len();
        if taken > 0 || !matched.duplicates.is_empty() {
            if taken > 0 {
                metrics::counter!("tocsin_events_matched_total", "rule" => rule.name.to_string())
                    .increment(taken as u64);
            }
            out.push((rule.clone(), matched));
        }
    }
    out
}
