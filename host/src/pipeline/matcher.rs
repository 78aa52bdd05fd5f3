//! Stage 1: which rules take which events.

use std::sync::Arc;

use crate::catalog::{ActiveRule, Generation};
use crate::event::Event;
use crate::plugin::bindings::ErrorEvent;

/// Groups `events` by the enabled rules that match them, keeping order.
/// An event matched by several rules goes to each.
pub fn match_batch(g: &Generation, events: &[Event]) -> Vec<(Arc<ActiveRule>, Vec<ErrorEvent>)> {
    let mut out = Vec::new();
    for rule in g.rules.iter().filter(|r| r.enabled) {
        let matched: Vec<ErrorEvent> = events
            .iter()
            .filter(|e| rule.matcher.matches(e))
            .map(ErrorEvent::from)
            .collect();
        if !matched.is_empty() {
            metrics::counter!("tocsin_events_matched_total", "rule" => rule.name.to_string())
                .increment(matched.len() as u64);
            out.push((rule.clone(), matched));
        }
    }
    out
}
