//! `tocsin:plugin/state`: aggregator state kept by the host, scoped to the
//! rule being served (see [`crate::state`]), on the batch's state view
//! (decided once per batch, by [`crate::state::StateStore::begin`]).
//! Async: the backend may be Redis, reached through the batch's
//! transaction.
//!
//! Every write is checked against the host's quotas first
//! ([`crate::plugin::quota`]): key and value size, writes and bytes per
//! call, and the keys and bytes the rule already holds on this machine. A
//! write over one traps the call. A Redis transaction's undo point takes
//! back what the call wrote before it; on direct state those writes stay
//! (see [`crate::state::BatchScope::checkpoint`]), bounded by the quotas.

use crate::plugin::bindings::aggregator::tocsin::plugin::state::{Host, WindowHit};
use crate::plugin::HostCtx;
use crate::state::{scoped_key, StateOps, StateView};

/// Runs a state call, charging its duration to host wait, not guest CPU.
macro_rules! timed {
    ($ctx:expr, $call:expr) => {{
        let started = std::time::Instant::now();
        let out = $call.await;
        $ctx.host_wait += started.elapsed();
        out
    }};
}

impl HostCtx {
    /// The state this call reads and writes, and `key` scoped to its rule.
    fn view(&self, key: &str) -> (StateView, String) {
        // Outside a batch (`configure`): the store itself.
        let view = match &self.scope.view {
            Some(v) => v.clone(),
            None => StateView::Direct(self.state.clone()),
        };
        (view, scoped_key(&self.scope.rule, key))
    }

    /// Charges a write of `key` and `value_bytes` to the call's quotas,
    /// or says which one it would go over.
    fn charge_write(&mut self, op: &str, key: &str, value_bytes: usize) -> wasmtime::Result<()> {
        let q = self.quotas.clone();
        let over = |what: String| format!("state.{op} refused: {what} ([sandbox.quotas])");
        if key.len() > q.state_key_bytes {
            let why = over(format!(
                "key is {} bytes, over state_key_bytes = {}",
                key.len(),
                q.state_key_bytes
            ));
            return Err(self.over_quota(why));
        }
        let value_cap = q.state_value_kb.saturating_mul(1024);
        if value_bytes > value_cap {
            let why = over(format!(
                "value is {value_bytes} bytes, over state_value_kb = {}",
                q.state_value_kb
            ));
            return Err(self.over_quota(why));
        }
        self.usage.state_writes += 1;
        self.usage.state_bytes += key.len() + value_bytes;
        if self.usage.state_writes > q.state_writes_per_call {
            let why = over(format!(
                "more than state_writes_per_call = {} writes in one call",
                q.state_writes_per_call
            ));
            return Err(self.over_quota(why));
        }
        if self.usage.state_bytes > q.state_mb_per_call << 20 {
            let why = over(format!(
                "more than state_mb_per_call = {} MiB written in one call",
                q.state_mb_per_call
            ));
            return Err(self.over_quota(why));
        }
        let held = match self.usage.rule_held {
            Some(held) => held,
            None => *self
                .usage
                .rule_held
                .insert(self.state.rule_usage(&self.scope.rule)),
        };
        // Every write may add a key: an upper bound, exact at the cap's edge
        // to within one call's writes.
        let keys = held.keys + self.usage.state_writes as usize;
        let bytes = held.bytes + self.usage.state_bytes;
        if keys > q.state_keys_per_rule || bytes > q.state_mb_per_rule << 20 {
            let why = over(format!(
                "rule `{}` would hold {keys} keys and {bytes} bytes of state, over its quota (state_keys_per_rule = {}, state_mb_per_rule = {})",
                self.scope.rule, q.state_keys_per_rule, q.state_mb_per_rule
            ));
            return Err(self.over_quota(why));
        }
        Ok(())
    }
}

impl HostCtx {
    /// Charges `bytes` the host writes again for a write (a list pushed
    /// to) to the call's bytes quota.
    fn charge_rewrite(&mut self, op: &str, bytes: usize) -> wasmtime::Result<()> {
        self.usage.state_bytes += bytes;
        let cap = self.quotas.state_mb_per_call;
        if self.usage.state_bytes > cap << 20 {
            let why = format!(
                "state.{op} refused: the host rewrites the whole list ({bytes} bytes) on each push: more than state_mb_per_call = {cap} MiB written in one call ([sandbox.quotas])"
            );
            return Err(self.over_quota(why));
        }
        Ok(())
    }
}

/// The bytes a live list in `slot` holds (0: none, or not a list).
fn list_bytes(slot: Option<&crate::state::Entry>, now: i64) -> usize {
    match slot {
        Some(crate::state::Entry {
            value: crate::state::ops::Value::List(items),
            expires_at,
        }) if expires_at.is_none_or(|t| t > now) => items.iter().map(String::len).sum(),
        _ => 0,
    }
}

impl Host for HostCtx {
    async fn window_add(
        &mut self,
        key: String,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> wasmtime::Result<WindowHit> {
        self.charge_write("window-add", &key, 16)?;
        let (state, key) = self.view(&key);
        let hit = timed!(
            self,
            state.window_add(&key, delta, now, window_ms, threshold)
        );
        Ok(WindowHit {
            before: hit.before,
            fires: hit.fires,
            after: hit.after,
            window_start: hit.window_start,
        })
    }

    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let (state, key) = self.view(&key);
        Ok(timed!(self, state.get(&key)))
    }

    async fn set(
        &mut self,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<()> {
        self.charge_write("set", &key, value.len())?;
        let (state, key) = self.view(&key);
        timed!(self, state.set(&key, value, ttl_ms));
        Ok(())
    }

    async fn set_if_absent(
        &mut self,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<bool> {
        self.charge_write("set-if-absent", &key, value.len())?;
        let (state, key) = self.view(&key);
        Ok(timed!(self, state.set_if_absent(&key, value, ttl_ms)))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let (state, key) = self.view(&key);
        timed!(self, state.delete(&key));
        Ok(())
    }

    async fn list_push(
        &mut self,
        key: String,
        value: String,
        max_len: u32,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<u32> {
        self.charge_write("list-push", &key, value.len())?;
        let max_len = max_len.min(self.quotas.state_list_len);
        let (state, scoped) = self.view(&key);
        // The host writes the whole list again (the embedded log's record,
        // the Redis commit): a push costs what the list holds, and that is
        // what the call's bytes quota is charged.
        let held = timed!(
            self,
            state.update(&scoped, |slot, now| (list_bytes(slot.as_ref(), now), false))
        );
        self.charge_rewrite("list-push", held)?;
        Ok(timed!(
            self,
            state.list_push(&scoped, value, max_len, ttl_ms)
        ))
    }

    async fn list_take(&mut self, key: String) -> wasmtime::Result<Vec<String>> {
        let (state, key) = self.view(&key);
        Ok(timed!(self, state.list_take(&key)))
    }
}
