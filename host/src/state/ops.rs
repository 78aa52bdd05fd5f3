//! The WIT `state` operations on every host backend.
//!
//! Their semantics (one function per operation, on the one entry a key
//! holds) are written once in the `tocsin-state-ops` crate, shared with
//! plugins' native tests. [`StateOps`] lifts them onto every backend
//! through one primitive, [`StateOps::update`] (run a function on a key's
//! entry, atomically), which each backend implements once: the embedded
//! store, the Redis batch transaction ([`super::redis::txn`]), and the
//! dispatching [`super::StateStore`] and [`super::StateView`]. Adding an
//! operation is a function in `tocsin-state-ops`, a provided method here,
//! and the WIT.

use std::future::Future;

pub use tocsin_state_ops::*;

/// State a plugin reads and writes: the WIT `state` interface on one
/// backend. Keys arrive scoped already ([`super::scoped_key`]).
pub trait StateOps: Sync {
    /// Runs `op` on the entry under `key`, atomically with respect to every
    /// other operation on the backend (and, on Redis, other instances).
    /// `op` gets the entry and the host's clock (ms since the epoch) and
    /// returns its result and whether it changed the entry.
    fn update<R: Send>(
        &self,
        key: &str,
        op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool) + Send,
    ) -> impl Future<Output = R> + Send;

    /// See the WIT `state.window-add`.
    fn window_add(
        &self,
        key: &str,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> impl Future<Output = WindowHit> + Send {
        self.update(key, move |slot, host_now| {
            let hit =
                tocsin_state_ops::window_add(slot, delta, now, window_ms, threshold, host_now);
            (hit, true)
        })
    }

    /// See the WIT `state.get`.
    fn get(&self, key: &str) -> impl Future<Output = Option<String>> + Send {
        self.update(key, |slot, host_now| {
            (tocsin_state_ops::get(slot.as_ref(), host_now), false)
        })
    }

    /// See the WIT `state.set`.
    fn set(
        &self,
        key: &str,
        value: String,
        ttl_ms: Option<u64>,
    ) -> impl Future<Output = ()> + Send {
        self.update(key, move |slot, host_now| {
            tocsin_state_ops::set(slot, value, ttl_ms, false, host_now);
            ((), true)
        })
    }

    /// See the WIT `state.set-if-absent`.
    fn set_if_absent(
        &self,
        key: &str,
        value: String,
        ttl_ms: Option<u64>,
    ) -> impl Future<Output = bool> + Send {
        self.update(key, move |slot, host_now| {
            let stored = tocsin_state_ops::set(slot, value, ttl_ms, true, host_now);
            (stored, stored)
        })
    }

    /// See the WIT `state.delete`.
    fn delete(&self, key: &str) -> impl Future<Output = ()> + Send {
        self.update(key, |slot, _| {
            let changed = slot.is_some();
            *slot = None;
            ((), changed)
        })
    }

    /// See the WIT `state.list-push`.
    fn list_push(
        &self,
        key: &str,
        value: String,
        max_len: u32,
        ttl_ms: Option<u64>,
    ) -> impl Future<Output = u32> + Send {
        self.update(key, move |slot, host_now| {
            (
                tocsin_state_ops::list_push(slot, value, max_len, ttl_ms, host_now),
                true,
            )
        })
    }

    /// See the WIT `state.list-take`.
    fn list_take(&self, key: &str) -> impl Future<Output = Vec<String>> + Send {
        self.update(key, |slot, host_now| {
            let changed = slot.is_some();
            (tocsin_state_ops::list_take(slot, host_now), changed)
        })
    }
}
