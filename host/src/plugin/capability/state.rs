//! `tocsin:plugin/state`: aggregator state kept by the host, scoped to the
//! rule being served (see [`crate::state`]).

use crate::plugin::bindings::aggregator::tocsin::plugin::state::{Host, WindowHit};
use crate::plugin::HostCtx;
use crate::state::scoped_key;

impl Host for HostCtx {
    fn window_add(
        &mut self,
        key: String,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> WindowHit {
        let hit = self.state.window_add(
            &scoped_key(&self.scope.rule, &key),
            delta,
            now,
            window_ms,
            threshold,
        );
        WindowHit {
            before: hit.before,
            fires: hit.fires,
            after: hit.after,
            window_start: hit.window_start,
        }
    }

    fn get(&mut self, key: String) -> Option<String> {
        self.state.get(&scoped_key(&self.scope.rule, &key))
    }

    fn set(&mut self, key: String, value: String, ttl_ms: Option<u64>) {
        self.state
            .set(&scoped_key(&self.scope.rule, &key), value, ttl_ms)
    }

    fn set_if_absent(&mut self, key: String, value: String, ttl_ms: Option<u64>) -> bool {
        self.state
            .set_if_absent(&scoped_key(&self.scope.rule, &key), value, ttl_ms)
    }

    fn delete(&mut self, key: String) {
        self.state.delete(&scoped_key(&self.scope.rule, &key))
    }

    fn list_push(&mut self, key: String, value: String, max_len: u32, ttl_ms: Option<u64>) -> u32 {
        self.state
            .list_push(&scoped_key(&self.scope.rule, &key), value, max_len, ttl_ms)
    }

    fn list_take(&mut self, key: String) -> Vec<String> {
        self.state.list_take(&scoped_key(&self.scope.rule, &key))
    }
}
