//! Host capabilities, one module per WIT interface a plugin may import.
//!
//! Each module implements the generated `Host` trait for [`HostCtx`]. What a
//! call may reach is decided by the [`CallScope`] the host sets before every
//! plugin call: the rule being served and what that rule grants.

pub mod email;
pub mod http;
pub mod log;
pub mod state;
pub mod websocket;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::HostCtx;
use crate::deliver::Delivery;

/// What a rule grants one channel plugin. Nothing is granted by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// May push to the live WebSocket stream.
    #[serde(default)]
    pub websocket: bool,
    /// Allowed email recipients: exact addresses, `*@domain`, or `default`
    /// for the `[smtp] to` recipients.
    #[serde(default)]
    pub email: Vec<String>,
    /// Allowed webhook hosts: `host`, `host:port` or `*.domain`.
    #[serde(default)]
    pub http: Vec<String>,
}

/// The context of the plugin call in progress.
#[derive(Default)]
pub struct CallScope {
    /// Rule being served; scopes state keys and labels logs.
    pub rule: Arc<str>,
    /// Capabilities the rule granted to this binding (channels only).
    pub grants: Arc<Grants>,
    /// Deliveries queued by this call; handed on only if the call returns.
    pub deliveries: Vec<Delivery>,
    /// The state the batch works on (its transaction on shared state, or
    /// the store); the aggregator's state calls go through it. `None`
    /// outside a batch.
    pub view: Option<crate::state::StateView>,
}

impl CallScope {
    /// Starts a scope for `rule` with `grants`.
    pub fn new(rule: Arc<str>, grants: Arc<Grants>) -> Self {
        Self {
            rule,
            grants,
            deliveries: Vec::new(),
            view: None,
        }
    }
}

impl HostCtx {
    /// Queues a delivery of `bytes` (at most `max_bytes`) for the call, or
    /// refuses it over a quota: the guest gets the error, and the call
    /// fails with it whatever the guest does next, so a flood never goes
    /// out in part ([`crate::plugin::quota`]).
    pub(crate) fn queue_delivery(
        &mut self,
        what: &str,
        bytes: usize,
        max_bytes: usize,
        delivery: Delivery,
    ) -> Result<(), String> {
        let cap = self.quotas.deliveries_per_call;
        let why = if bytes > max_bytes {
            format!("{what} refused: it is {bytes} bytes, at most {max_bytes}")
        } else if self.scope.deliveries.len() >= cap {
            format!(
                "{what} refused: more than {cap} deliveries in one call ([sandbox.quotas] deliveries_per_call)"
            )
        } else {
            self.scope.deliveries.push(delivery);
            return Ok(());
        };
        let _ = self.over_quota(why.clone());
        Err(why)
    }
}

/// The shared `types` interface has no functions; its empty host trait.
impl crate::plugin::bindings::aggregator::tocsin::plugin::types::Host for HostCtx {}
