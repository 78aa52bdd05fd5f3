//! `threshold`: tocsin's default aggregator, the seed's algorithm.
//!
//! Alert when the same key (by default error code and service) is seen
//! `threshold` times within `window`; the count then starts over. Counting
//! happens in host state (`state::window-add`), not in plugin memory, so it
//! survives plugin swaps, traps and restarts and is shared between tocsin
//! instances.
//!
//! ```toml
//! # rules/device-start.toml
//! [aggregate]
//! plugin = "threshold"
//! config = { threshold = 3, window = "15m" }
//! # optional in config: key = ["error-code", "service-name"] (default),
//! #   samples = 5 (default), quiet = "1h" (default: none),
//! #   clock = "received" (default) or "event"
//! ```
//!
//! The algorithm lives in [`logic`], written against the [`logic::State`]
//! trait so it is unit-tested natively; this file only wires it to the
//! SDK (`tocsin-plugin-sdk`).

pub mod logic;

use tocsin_plugin_sdk::aggregator::{Aggregator, Alert, ErrorEvent};
use tocsin_plugin_sdk::{log, state, Table, WindowHit};

impl Aggregator for logic::Config {
    const NAME: &'static str = "threshold";

    fn configure(config: &mut Table) -> Result<Self, String> {
        logic::Config::read(config)
    }

    fn aggregate(&self, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
        logic::aggregate(self, &events, &mut HostState)
    }
}

/// [`logic::State`] backed by the host's `state` and `log` imports.
struct HostState;

impl logic::State for HostState {
    fn window_add(
        &mut self,
        key: &str,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> WindowHit {
        state::window_add(key, delta, now, window_ms, threshold)
    }

    fn set_if_absent(&mut self, key: &str, value: &str, ttl_ms: Option<u64>) -> bool {
        state::set_if_absent(key, value, ttl_ms)
    }

    fn delete(&mut self, key: &str) {
        state::delete(key)
    }

    fn list_push(&mut self, key: &str, value: &str, max_len: u32, ttl_ms: Option<u64>) -> u32 {
        state::list_push(key, value, max_len, ttl_ms)
    }

    fn list_take(&mut self, key: &str) -> Vec<String> {
        state::list_take(key)
    }

    fn debug(&mut self, message: &str) {
        log::debug(message)
    }
}

tocsin_plugin_sdk::export_aggregator!(logic::Config);
