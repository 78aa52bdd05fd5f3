//! Alert ids an HTTP source saw recently, with their state: how re-sends
//! of the same alert (Prometheus every minute, Alertmanager whenever a
//! group changes) are recognised before they reach the pipeline. One set
//! per engine, held by its [`super::Ingest`] (not a process global), and
//! bounded.
//!
//! The pipeline's own dedup ([`crate::pipeline::matcher`], per rule, in
//! the state store) still recognises what gets through: this set only
//! spares it the re-sends, and lets a firing alert that was resolved fire
//! again.

use std::collections::HashMap;

/// How long a firing alert's id is remembered: a still-firing alert
/// re-sent after this is counted again (a daily reminder).
pub const FIRING_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a resolution's id is remembered (Prometheus re-sends resolved
/// alerts for 15 minutes).
pub const RESOLVED_TTL_MS: i64 = 3600 * 1000;
/// Remembered ids before expired ones are pruned (and, if still over, all).
pub const SEEN_CAP: usize = 200_000;

/// The last state in which an alert id was seen.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    Firing,
    Resolved,
}

/// Alert ids recently seen, with their state and expiry (epoch ms).
#[derive(Default)]
pub struct Recent {
    map: HashMap<String, (Seen, i64)>,
}

impl Recent {
    /// Records `id` in `state`; true unless it was already in that state
    /// and not expired.
    pub fn first(&mut self, id: &str, state: Seen, now: i64) -> bool {
        if let Some((s, expires)) = self.map.get(id) {
            if *s == state && *expires > now {
                return false;
            }
        }
        if self.map.len() >= SEEN_CAP {
            self.map.retain(|_, (_, expires)| *expires > now);
            if self.map.len() >= SEEN_CAP {
                tracing::warn!(
                    cap = SEEN_CAP,
                    "too many distinct alerts to remember; forgetting all"
                );
                self.map.clear();
            }
        }
        let ttl = match state {
            Seen::Firing => FIRING_TTL_MS,
            Seen::Resolved => RESOLVED_TTL_MS,
        };
        self.map
            .insert(id.to_string(), (state, now.saturating_add(ttl)));
        true
    }

    /// Forgets `ids`: they were not accepted after all (the submit
    /// failed), so their re-send must get through.
    pub fn forget<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.map.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_set_dedupes_by_state_and_expires() {
        let mut s = Recent::default();
        assert!(s.first("a", Seen::Firing, 0));
        assert!(!s.first("a", Seen::Firing, 1));
        assert!(s.first("a", Seen::Resolved, 2));
        assert!(!s.first("a", Seen::Resolved, 3));
        assert!(s.first("a", Seen::Firing, 4));
        assert!(s.first("a", Seen::Firing, 5 + FIRING_TTL_MS));
        s.forget(["a"]);
        assert!(s.first("a", Seen::Firing, 6 + FIRING_TTL_MS));
    }
}
