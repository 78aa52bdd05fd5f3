//! What each rule's plugin state holds in the embedded store: live keys
//! and an estimate of their bytes, kept up to date on every change so the
//! host's per-rule state quotas ([`crate::plugin::quota`]) are checked
//! without walking the map.

use std::collections::HashMap;

use serde::Serialize;

use super::ops::{Entry, Value};

/// What one rule's plugin state holds in memory: live keys and an estimate
/// of their bytes (key, value and the map's own overhead). The host's
/// state quotas are checked against it ([`crate::plugin::quota`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleUsage {
    pub keys: usize,
    pub bytes: usize,
}

/// Bytes an entry costs beyond its key and value text: the map's slot,
/// the entry and the key's allocation.
const ENTRY_OVERHEAD: usize = 96;

/// Estimated memory of `key` holding `entry`.
pub(super) fn footprint(key: &str, entry: &Entry) -> usize {
    let value = match &entry.value {
        Value::Counter { .. } => 0,
        Value::Text(t) => t.len(),
        Value::List(items) => items.iter().map(|i| i.len() + 24).sum(),
    };
    key.len() + ENTRY_OVERHEAD + value
}

/// The rule a plugin key is scoped to; `None` for the host's own keys
/// (dedup marks, intents, journal): they are the host's, not the plugin's.
pub(super) fn plugin_rule(key: &str) -> Option<&str> {
    if key.starts_with('\u{1e}') {
        return None;
    }
    key.split_once('\u{1f}').map(|(rule, _)| rule)
}

/// Moves `rule`'s usage from an entry of `before` bytes to one of `after`
/// (`None`: no entry).
pub(super) fn account(
    usage: &mut HashMap<String, RuleUsage>,
    rule: &str,
    before: Option<usize>,
    after: Option<usize>,
) {
    if before == after {
        return;
    }
    let u = match usage.get_mut(rule) {
        Some(u) => u,
        None => usage.entry(rule.to_string()).or_default(),
    };
    u.keys = (u.keys + usize::from(after.is_some())).saturating_sub(usize::from(before.is_some()));
    u.bytes = (u.bytes + after.unwrap_or(0)).saturating_sub(before.unwrap_or(0));
    if u.keys == 0 {
        usage.remove(rule);
    }
}

/// Every rule's usage in `map`.
pub(super) fn usage_of(map: &HashMap<String, Entry>) -> HashMap<String, RuleUsage> {
    let mut usage = HashMap::new();
    for (k, e) in map {
        if let Some(rule) = plugin_rule(k) {
            account(&mut usage, rule, None, Some(footprint(k, e)));
        }
    }
    usage
}
