//! `tocsin:plugin/state`: aggregator state kept by the host, scoped to the
//! rule being served (see [`crate::state`]), on the batch's state view
//! (decided once per batch, by [`crate::state::StateStore::begin`]).
//! Async: the backend may be Redis, reached through the batch's
//! transaction.

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
}

impl Host for HostCtx {
    async fn window_add(
        &mut self,
        key: String,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> WindowHit {
        let (state, key) = self.view(&key);
        let hit = timed!(
            self,
            state.window_add(&key, delta, now, window_ms, threshold)
        );
        WindowHit {
            before: hit.before,
            fires: hit.fires,
            after: hit.after,
            window_start: hit.window_start,
        }
    }

    async fn get(&mut self, key: String) -> Option<String> {
        let (state, key) = self.view(&key);
        timed!(self, state.get(&key))
    }

    async fn set(&mut self, key: String, value: String, ttl_ms: Option<u64>) {
        let (state, key) = self.view(&key);
        timed!(self, state.set(&key, value, ttl_ms))
    }

    async fn set_if_absent(&mut self, key: String, value: String, ttl_ms: Option<u64>) -> bool {
        let (state, key) = self.view(&key);
        timed!(self, state.set_if_absent(&key, value, ttl_ms))
    }

    async fn delete(&mut self, key: String) {
        let (state, key) = self.view(&key);
        timed!(self, state.delete(&key))
    }

    async fn list_push(
        &mut self,
        key: String,
        value: String,
        max_len: u32,
        ttl_ms: Option<u64>,
    ) -> u32 {
        let (state, key) = self.view(&key);
        timed!(self, state.list_push(&key, value, max_len, ttl_ms))
    }

    async fn list_take(&mut self, key: String) -> Vec<String> {
        let (state, key) = self.view(&key);
        timed!(self, state.list_take(&key))
    }
}
