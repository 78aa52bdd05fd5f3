//! `[watch]`: tocsin watching itself ([`crate::watch`]): how often it
//! looks, the thresholds past which its own conditions become `self`
//! events, and how many of those it may send.

use serde::{Deserialize, Serialize};

/// `[watch]`, with the seed's thresholds as defaults.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Whether tocsin turns its own conditions into events at all.
    pub enabled: bool,
    /// How often the conditions are looked at, in ms.
    pub interval_ms: u64,
    /// Messages ready in the AMQP queue past which it is a backlog.
    pub amqp_queue_depth: u64,
    /// Seconds the AMQP consumer may lag (messages wait, nothing is
    /// consumed; or the events consumed are this old) before it alerts.
    pub amqp_lag_secs: u64,
    /// Jobs waiting in the pipeline's queue past which it is a backlog.
    pub queue_depth: u64,
    /// Plugin errors of one rule within a minute that count as failing
    /// repeatedly.
    pub plugin_errors: u64,
    /// The target for the 95th percentile of the time from acceptance to
    /// durable over the last 30 to 60 s, in ms.
    pub p95_ms: u64,
    /// Most `self` events sent per minute; the rest are dropped (counted
    /// in `tocsin_self_events_dropped_total`).
    pub events_per_minute: u32,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 5000,
            amqp_queue_depth: 10_000,
            amqp_lag_secs: 300,
            queue_depth: 1000,
            plugin_errors: 10,
            p95_ms: 5000,
            events_per_minute: 30,
        }
    }
}
