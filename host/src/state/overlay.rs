//! A batch's private copy of the embedded keys it touches, committed in
//! one step: how an *isolated* batch ([`crate::pipeline::isolate`]) runs
//! without holding the store's batch gate.
//!
//! Why: an ordinary batch on the embedded store writes in place and holds
//! [`super::EmbeddedState::open_batch`] from its first write to its commit
//! point, so that no log cut falls inside it. A plugin that runs to its
//! CPU deadline would hold that gate for the whole deadline, and a waiting
//! cut holds every other batch back: one slow rule would stall them all.
//! An isolated batch instead reads each key once into its copy, works on
//! the copy with the same operations ([`super::ops`]), and commits every
//! changed key with [`super::EmbeddedState::apply_all`], under one lock,
//! so the log gets the batch whole without a gate.
//!
//! Optimistic: the commit first checks that no key the batch read was
//! changed meanwhile (by an ordinary batch of the same rule while the rule
//! moves between lanes, by an acknowledgement or a timer); if one was,
//! nothing is written and the batch is redone ([`super::CommitError::Again`]),
//! as a Redis batch that lost its locks is. A failed plugin call rolls the
//! copy back to a [`Snapshot`], so a trap leaves no partial writes.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::ops::{Entry, StateOps};
use super::EmbeddedState;
use crate::event::now_ms;

/// One key as the batch first read it, and as the batch has it now.
#[derive(Clone)]
struct Slot {
    base: Option<Entry>,
    now: Option<Entry>,
}

/// The copy at an undo point (see [`Overlay::snapshot`]).
pub struct Snapshot(HashMap<String, Slot>);

/// See the module documentation.
pub struct Overlay {
    store: Arc<EmbeddedState>,
    slots: Mutex<HashMap<String, Slot>>,
}

/// The entry as reads see it at `now`: an expired one is absent.
fn live(entry: Option<&Entry>, now: i64) -> Option<&Entry> {
    entry.filter(|e| e.expires_at.is_none_or(|t| t > now))
}

impl Overlay {
    /// An empty copy over `store`.
    pub fn new(store: Arc<EmbeddedState>) -> Self {
        Self {
            store,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The copy as it is now, to go back to with [`Self::restore`].
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.slots.lock().clone())
    }

    /// Undoes every change since `snapshot`.
    pub fn restore(&self, snapshot: Snapshot) {
        *self.slots.lock() = snapshot.0;
    }

    /// Writes every key the batch changed, unless a key it read changed
    /// in the store since; `false` when nothing was written (redo).
    pub fn commit(&self) -> bool {
        let slots = std::mem::take(&mut *self.slots.lock());
        let now = now_ms();
        let writes: Vec<(String, Option<Entry>)> = slots
            .iter()
            .filter(|(_, s)| s.now != s.base)
            .map(|(k, s)| (k.clone(), s.now.clone()))
            .collect();
        let unchanged = |map: &HashMap<String, Entry>| {
            slots
                .iter()
                .all(|(k, s)| live(map.get(k), now) == live(s.base.as_ref(), now))
        };
        if writes.is_empty() {
            // Nothing to write; nothing read can make a change stale.
            return true;
        }
        self.store.apply_all(unchanged, writes)
    }
}

impl StateOps for Overlay {
    async fn update<R: Send>(
        &self,
        key: &str,
        op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool) + Send,
    ) -> R {
        let mut slots = self.slots.lock();
        let slot = slots.entry(key.to_string()).or_insert_with(|| {
            let base = self.store.peek(key);
            Slot {
                now: base.clone(),
                base,
            }
        });
        op(&mut slot.now, now_ms()).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (std::path::PathBuf, Arc<EmbeddedState>) {
        let dir = std::env::temp_dir().join(format!("tocsin-overlay-{}", uuid::Uuid::now_v7()));
        let s = Arc::new(EmbeddedState::open(&dir).expect("open"));
        (dir, s)
    }

    #[tokio::test]
    async fn writes_stay_private_until_commit() {
        let (_d, s) = store();
        let o = Overlay::new(s.clone());
        o.set("r\u{1f}k", "v".into(), None).await;
        assert_eq!(s.get("r\u{1f}k").await, None);
        assert_eq!(o.get("r\u{1f}k").await.as_deref(), Some("v"));
        assert!(o.commit());
        assert_eq!(s.get("r\u{1f}k").await.as_deref(), Some("v"));
        assert_eq!(s.rule_usage("r").keys, 1);
    }

    #[tokio::test]
    async fn a_key_changed_meanwhile_refuses_the_commit() {
        let (_d, s) = store();
        s.set("r\u{1f}n", "1".into(), None).await;
        let o = Overlay::new(s.clone());
        assert_eq!(o.get("r\u{1f}n").await.as_deref(), Some("1"));
        o.set("r\u{1f}other", "x".into(), None).await;
        s.set("r\u{1f}n", "2".into(), None).await;
        assert!(!o.commit());
        assert_eq!(s.get("r\u{1f}other").await, None);
    }

    #[tokio::test]
    async fn restore_undoes_a_failed_call() {
        let (_d, s) = store();
        let o = Overlay::new(s.clone());
        o.set("r\u{1f}a", "1".into(), None).await;
        let cp = o.snapshot();
        o.set("r\u{1f}b", "2".into(), None).await;
        o.delete("r\u{1f}a").await;
        o.restore(cp);
        assert!(o.commit());
        assert_eq!(s.get("r\u{1f}a").await.as_deref(), Some("1"));
        assert_eq!(s.get("r\u{1f}b").await, None);
    }
}
