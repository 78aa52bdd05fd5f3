//! `tocsin:plugin/state`: aggregator state kept by the host, scoped to the
//! rule being served (see [`crate::state`]). Async: the backend may be Redis.

use crate::plugin::bindings::aggregator::tocsin::plugin::state::{Host, WindowHit};
use crate::plugin::HostCtx;
use crate::state::scoped_key;

/// Runs a state call, charging its duration to host wait, not guest CPU.
macro_rules! timed {
    ($ctx:expr, $call:expr) => {{
        let started = std::time::Instant::now();
        let out = $call.await;
        $ctx.host_wait += started.elapsed();
        out
    }};
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
        let key = scoped_key(&self.scope.rule, &key);
        let hit = self
            .state
            .window_add(&key, delta, now, window_ms, threshold)
            .await;
        WindowHit {
            before: hit.before,
            fires: hit.fires,
            after: hit.after,
            window_start: hit.window_start,
        }
    }

    async fn get(&mut self, key: String) -> Option<String> {
        let (state, key) = (self.state.clone(), scoped_key(&self.scope.rule, &key));
        timed!(self, state.get(&key))
    }

    async fn set(&mut self, key: String, value: String, ttl_ms: Option<u64>) {
        self.state
            .set(&scoped_key(&self.scope.rule, &key), value, ttl_ms)
            .await
    }

    async fn set_if_absent(&mut self, key: String, value: String, ttl_ms: Option<u64>) -> bool {
        self.state
            .set_if_absent(&scoped_key(&self.scope.rule, &key), value, ttl_ms)
            .await
    }

    async fn delete(&mut self, key: String) {
        let (state, key) = (self.state.clone(), scoped_key(&self.scope.rule, &key));
        timed!(self, state.delete(&key))
    }

    async fn list_push(
        &mut self,
        key: String,
        value: String,
        max_len: u32,
        ttl_ms: Option<u64>,
    ) -> u32 {
        let (state, key) = (self.state.clone(), scoped_key(&self.scope.rule, &key));
        timed!(self, state.list_push(&key, value, max_len, ttl_ms))
    }

    async fn list_take(&mut self, key: String) -> Vec<String> {
        self.state
            .list_take(&scoped_key(&self.scope.rule, &key))
            .await
    }
}
