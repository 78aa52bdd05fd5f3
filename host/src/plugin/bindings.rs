//! Host-side bindings generated from `wit/`, one module per world.
//!
//! The shared interfaces (`types`, `log`) are generated once, in
//! `aggregator`, and reused by the other worlds so an `Alert` produced by an
//! aggregator can be handed to a router and a channel without conversion.

/// Bindings of the `aggregator` world.
pub mod aggregator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "aggregator",
        // State may live in Redis: its calls await the network. Trappable:
        // a write over a host quota stops the call ([`super::quota`]).
        imports: { "tocsin:plugin/state": async | trappable },
        exports: { default: async },
    });
}

/// Bindings of the `router` world.
pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "router",
        exports: { default: async },
        with: {
            "tocsin:plugin/types": super::aggregator::tocsin::plugin::types,
            "tocsin:plugin/log": super::aggregator::tocsin::plugin::log,
        },
    });
}

/// Bindings of the `channel` world.
pub mod channel {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "channel",
        exports: { default: async },
        with: {
            "tocsin:plugin/types": super::aggregator::tocsin::plugin::types,
            "tocsin:plugin/log": super::aggregator::tocsin::plugin::log,
        },
    });
}

pub use aggregator::tocsin::plugin::types::{Alert, ErrorEvent, Severity as WitSeverity};

use crate::event::{Event, Severity};

impl From<Severity> for WitSeverity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Critical => Self::Critical,
            Severity::High => Self::High,
            Severity::Medium => Self::Medium,
            Severity::Low => Self::Low,
        }
    }
}

impl From<WitSeverity> for Severity {
    fn from(s: WitSeverity) -> Self {
        match s {
            WitSeverity::Critical => Self::Critical,
            WitSeverity::High => Self::High,
            WitSeverity::Medium => Self::Medium,
            WitSeverity::Low => Self::Low,
        }
    }
}

impl From<&Event> for ErrorEvent {
    fn from(e: &Event) -> Self {
        ErrorEvent {
            event_id: e.event_id.clone(),
            source: e.source.to_string(),
            error_code: e.error_code.clone(),
            severity: e.severity.into(),
            message: e.message.clone(),
            service_name: e.service_name.clone(),
            timestamp: e.timestamp,
            received_at: e.received_at,
            user_message: e.user_message.clone(),
            user_id: e.user_id.clone(),
            stack_trace: e.stack_trace.clone(),
            metadata: e
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}
