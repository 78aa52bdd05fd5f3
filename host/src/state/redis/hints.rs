//! Prefetch hints: which keys a rule's batches keep loading, so the next
//! batch of that rule loads them in its first round trip.

use std::collections::HashMap;

/// Per rule, the plugin keys recent batches loaded one at a time, so the
/// rule's next batch loads them in its prefetch round trip instead.
#[derive(Default)]
pub(super) struct Hints {
    by_rule: HashMap<String, std::collections::HashSet<String>>,
}

impl Hints {
    /// Most keys remembered per rule; past it the set starts over (a rule
    /// with more live keys than this gets no benefit, and no extra load).
    const MAX_PER_RULE: usize = 1024;

    pub(super) fn keys_for(&self, rules: &[String]) -> Vec<String> {
        rules
            .iter()
            .filter_map(|r| self.by_rule.get(r))
            .flat_map(|keys| keys.iter().cloned())
            .collect()
    }

    pub(super) fn learn(&mut self, keys: Vec<String>) {
        for key in keys {
            // Plugin keys only: dedup marks are prefetched from the events.
            if key.starts_with('\u{1e}') {
                continue;
            }
            let Some(rule) = crate::state::rule_of(&key) else {
                continue;
            };
            let set = self.by_rule.entry(rule.to_string()).or_default();
            if set.len() >= Self::MAX_PER_RULE {
                set.clear();
            }
            set.insert(key);
        }
    }
}
