//! Write [tocsin](https://github.com/tocsin) alert plugins in Rust.
//!
//! A plugin is a WebAssembly component of one of three worlds (the WIT in
//! `wit/`, shipped inside this crate): an **aggregator** turns matched
//! error events into alerts, a **router** picks an alert's channels, a
//! **channel** delivers an alert through the host's capabilities. With this
//! crate a plugin is one trait impl on the type holding one binding's
//! settings, and one export line:
//!
//! | world | trait | export |
//! |---|---|---|
//! | aggregator | [`aggregator::Aggregator`] | [`export_aggregator!`] |
//! | router | [`router::Router`] | [`export_router!`] |
//! | channel | [`channel::Channel`] | [`export_channel!`] |
//!
//! The macros keep the configuration of every binding (one use of the
//! plugin by one rule), read with a [`Table`] whose errors name the key,
//! and refuse unknown keys. The host's capabilities are plain functions:
//! [`log`], [`state`] (aggregators), [`websocket`], [`email`], [`http`]
//! (channels). In a native build (`cargo test`) they run against the fakes
//! of [`testing`], so plugin logic is unit-tested without an engine.
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! tocsin-plugin-sdk = { version = "0.1", features = ["aggregator"] }
//! ```
//!
//! Build with `tocsin plugin build` (or `cargo build --release --target
//! wasm32-wasip2`). On wasm32 enable exactly one world feature: a
//! component is one world. In a workspace of plugins of several worlds,
//! build each world's plugins in their own cargo invocation, since cargo
//! unifies features.

#[cfg(all(
    target_arch = "wasm32",
    not(any(feature = "aggregator", feature = "router", feature = "channel"))
))]
compile_error!(
    "tocsin-plugin-sdk: enable the feature of your plugin's world: `aggregator`, `router` or `channel`"
);

#[cfg(all(
    target_arch = "wasm32",
    any(
        all(feature = "aggregator", feature = "router"),
        all(feature = "aggregator", feature = "channel"),
        all(feature = "router", feature = "channel")
    )
))]
compile_error!(
    "tocsin-plugin-sdk: a component is one world; enable only one of `aggregator`, `router`, `channel` (cargo unifies features in a workspace: build plugins of different worlds separately)"
);

// The export macros expand in the plugin's crate; they reach wit-bindgen's
// runtime through this crate, so a plugin needs no wit-bindgen dependency.
extern crate self as tocsin_plugin_sdk;
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub mod config;
mod host;
pub mod types;

#[cfg(any(feature = "aggregator", not(target_arch = "wasm32")))]
#[path = "world/aggregator.rs"]
pub mod aggregator;
#[cfg(any(feature = "channel", not(target_arch = "wasm32")))]
#[path = "world/channel.rs"]
pub mod channel;
#[cfg(any(feature = "router", not(target_arch = "wasm32")))]
#[path = "world/router.rs"]
pub mod router;

/// Chat and incident tools that take one JSON request per alert.
#[cfg(any(feature = "channel", not(target_arch = "wasm32")))]
pub mod chat;
#[cfg(feature = "sign")]
pub mod sign;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// The JSON library the configuration is read with, for plugins that
/// render JSON (no second dependency to keep in step).
pub use serde_json;

pub use config::{format_duration, parse_duration, rfc3339, Registry, Table};
pub use host::log;
#[cfg(any(feature = "aggregator", not(target_arch = "wasm32")))]
pub use host::state;
#[cfg(any(feature = "channel", not(target_arch = "wasm32")))]
pub use host::{email, http, websocket};
pub use types::{EmailMessage, HttpRequest, Level, WindowHit};

/// Natively every world is compiled: an alert of one world converts into
/// another's, for tests that chain an aggregator, a router and a channel.
#[cfg(not(target_arch = "wasm32"))]
mod convert {
    macro_rules! alert_into {
        ($from:ident => $to:ident) => {
            impl From<crate::$from::Severity> for crate::$to::Severity {
                fn from(s: crate::$from::Severity) -> Self {
                    use crate::$from::Severity as S;
                    match s {
                        S::Critical => Self::Critical,
                        S::High => Self::High,
                        S::Medium => Self::Medium,
                        S::Low => Self::Low,
                    }
                }
            }
            impl From<crate::$from::Alert> for crate::$to::Alert {
                fn from(a: crate::$from::Alert) -> Self {
                    Self {
                        key: a.key,
                        rule: a.rule,
                        count: a.count,
                        first_seen: a.first_seen,
                        last_seen: a.last_seen,
                        severity: a.severity.into(),
                        title: a.title,
                        summary: a.summary,
                        samples: a.samples,
                        labels: a.labels,
                    }
                }
            }
        };
    }
    alert_into!(aggregator => channel);
    alert_into!(aggregator => router);
    alert_into!(channel => router);
}
