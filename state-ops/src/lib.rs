//! The semantics of the WIT `state` operations, on the one entry a key
//! holds: one writing, shared by every tocsin state backend (the host's
//! embedded store and its Redis batch transaction) and by plugins' native
//! tests ([`Memory`]), so none of them can drift from the others.
//!
//! Each function takes the entry (`None` for nothing) and the host's
//! clock, and updates it in place; an expired entry counts as none.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Result of an atomic windowed add; mirrors the WIT `window-hit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowHit {
    pub before: u64,
    pub fires: u32,
    pub after: u64,
    pub window_start: i64,
}

/// A stored value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Counter { count: u64, window_start: i64 },
    Text(String),
    List(Vec<String>),
}

/// A value and its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub value: Value,
    /// Host wall-clock expiry (ms since epoch).
    pub expires_at: Option<i64>,
}

impl Entry {
    /// A placeholder that allocates nothing.
    pub const EMPTY: Entry = Entry {
        value: Value::Text(String::new()),
        expires_at: Some(0),
    };

    /// Whether the entry is still live at `host_now`.
    pub fn live(&self, host_now: i64) -> bool {
        self.expires_at.is_none_or(|t| t > host_now)
    }
}

/// Absolute expiry for a TTL given from `now`.
pub fn expiry(now: i64, ttl_ms: Option<u64>) -> Option<i64> {
    ttl_ms.map(|ttl| now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)))
}

/// See the WIT `state.window-add`.
pub fn window_add(
    slot: &mut Option<Entry>,
    delta: u32,
    now: i64,
    window_ms: u64,
    threshold: u64,
    host_now: i64,
) -> WindowHit {
    let window = i64::try_from(window_ms).unwrap_or(i64::MAX);
    let (count, start) = match slot {
        Some(Entry {
            value:
                Value::Counter {
                    count,
                    window_start,
                },
            expires_at,
        }) if expires_at.is_none_or(|t| t > host_now)
            && now.saturating_sub(*window_start) < window =>
        {
            (*count, *window_start)
        }
        _ => (0, now),
    };
    let total = count + u64::from(delta);
    let (fires, after) = match total.checked_div(threshold) {
        Some(fires) => (u32::try_from(fires).unwrap_or(u32::MAX), total % threshold),
        None => (0, total),
    };
    *slot = (after != 0).then(|| Entry {
        value: Value::Counter {
            count: after,
            window_start: if fires > 0 { now } else { start },
        },
        expires_at: Some(host_now.saturating_add(window)),
    });
    WindowHit {
        before: count,
        fires,
        after,
        window_start: start,
    }
}

/// See the WIT `state.get`.
pub fn get(slot: Option<&Entry>, host_now: i64) -> Option<String> {
    match slot {
        Some(Entry {
            value: Value::Text(v),
            expires_at,
        }) if expires_at.is_none_or(|t| t > host_now) => Some(v.clone()),
        _ => None,
    }
}

/// See the WIT `state.set` and `state.set-if-absent`; returns whether it
/// stored.
pub fn set(
    slot: &mut Option<Entry>,
    value: String,
    ttl_ms: Option<u64>,
    only_if_absent: bool,
    host_now: i64,
) -> bool {
    if only_if_absent && slot.as_ref().is_some_and(|e| e.live(host_now)) {
        return false;
    }
    *slot = Some(Entry {
        value: Value::Text(value),
        expires_at: expiry(host_now, ttl_ms),
    });
    true
}

/// See the WIT `state.list-push`; returns the length afterwards.
pub fn list_push(
    slot: &mut Option<Entry>,
    value: String,
    max_len: u32,
    ttl_ms: Option<u64>,
    host_now: i64,
) -> u32 {
    let mut items = match slot.take() {
        Some(Entry {
            value: Value::List(items),
            expires_at,
        }) if expires_at.is_none_or(|t| t > host_now) => items,
        _ => Vec::new(),
    };
    if items.len() < max_len as usize {
        items.push(value);
    }
    let len = u32::try_from(items.len()).unwrap_or(u32::MAX);
    *slot = Some(Entry {
        value: Value::List(items),
        expires_at: expiry(host_now, ttl_ms),
    });
    len
}

/// See the WIT `state.list-take`.
pub fn list_take(slot: &mut Option<Entry>, host_now: i64) -> Vec<String> {
    match slot.take() {
        Some(Entry {
            value: Value::List(items),
            expires_at,
        }) if expires_at.is_none_or(|t| t > host_now) => items,
        _ => Vec::new(),
    }
}

/// The WIT `state` interface on an in-memory map with a settable clock:
/// what a plugin's native tests run against instead of a hand-written
/// fake, so they see the host's semantics exactly.
#[derive(Debug, Default)]
pub struct Memory {
    map: HashMap<String, Entry>,
    /// The host clock the operations see (ms since the epoch).
    pub now: i64,
}

impl Memory {
    /// Runs `op` on the entry under `key` (the primitive every backend
    /// implements).
    pub fn update<R>(
        &mut self,
        key: &str,
        op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool),
    ) -> R {
        let mut slot = self.map.remove(key);
        let out = op(&mut slot, self.now).0;
        if let Some(entry) = slot {
            self.map.insert(key.to_string(), entry);
        }
        out
    }

    /// See the WIT `state.window-add`.
    pub fn window_add(
        &mut self,
        key: &str,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> WindowHit {
        self.update(key, |slot, host_now| {
            (
                window_add(slot, delta, now, window_ms, threshold, host_now),
                true,
            )
        })
    }

    /// See the WIT `state.get`.
    pub fn get(&mut self, key: &str) -> Option<String> {
        self.update(key, |slot, host_now| (get(slot.as_ref(), host_now), false))
    }

    /// See the WIT `state.set` (`only_if_absent`: `state.set-if-absent`).
    pub fn set(
        &mut self,
        key: &str,
        value: String,
        ttl_ms: Option<u64>,
        only_if_absent: bool,
    ) -> bool {
        self.update(key, |slot, host_now| {
            let stored = set(slot, value, ttl_ms, only_if_absent, host_now);
            (stored, stored)
        })
    }

    /// See the WIT `state.delete`.
    pub fn delete(&mut self, key: &str) {
        self.map.remove(key);
    }

    /// See the WIT `state.list-push`.
    pub fn list_push(
        &mut self,
        key: &str,
        value: String,
        max_len: u32,
        ttl_ms: Option<u64>,
    ) -> u32 {
        self.update(key, |slot, host_now| {
            (list_push(slot, value, max_len, ttl_ms, host_now), true)
        })
    }

    /// See the WIT `state.list-take`.
    pub fn list_take(&mut self, key: &str) -> Vec<String> {
        self.update(key, |slot, host_now| (list_take(slot, host_now), true))
    }

    /// The entry under `key`, for tests to look at.
    pub fn peek(&self, key: &str) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Keys held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fires_at_threshold_and_restarts() {
        let mut slot = None;
        for i in 0..2 {
            let hit = window_add(&mut slot, 1, 1_000 + i, 60_000, 3, 1_000);
            assert_eq!(hit.fires, 0);
        }
        let hit = window_add(&mut slot, 1, 1_002, 60_000, 3, 1_000);
        assert_eq!((hit.before, hit.fires, hit.after), (2, 1, 0));
        assert!(slot.is_none(), "a counter that fired and reached 0 is gone");
    }

    #[test]
    fn expired_entries_count_as_absent() {
        let mut slot = None;
        assert!(set(&mut slot, "a".into(), Some(10), true, 100));
        assert!(!set(&mut slot, "b".into(), Some(10), true, 105));
        assert_eq!(get(slot.as_ref(), 109).as_deref(), Some("a"));
        assert_eq!(get(slot.as_ref(), 110), None);
        assert!(set(&mut slot, "c".into(), None, true, 110));
    }

    #[test]
    fn list_keeps_at_most_max_len() {
        let mut slot = None;
        assert_eq!(list_push(&mut slot, "1".into(), 2, None, 0), 1);
        assert_eq!(list_push(&mut slot, "2".into(), 2, None, 0), 2);
        assert_eq!(list_push(&mut slot, "3".into(), 2, None, 0), 2);
        assert_eq!(list_take(&mut slot, 0), vec!["1", "2"]);
        assert!(slot.is_none());
    }
}
