//! The `aggregator` world: events in, alerts out.
//!
//! Implement [`Aggregator`] on the type that holds one binding's settings
//! and export it with [`export_aggregator!`](crate::export_aggregator):
//!
//! ```
//! use tocsin_plugin_sdk::aggregator::{Aggregator, Alert, ErrorEvent};
//! use tocsin_plugin_sdk::{state, Table};
//!
//! struct Counter { threshold: u64, window_ms: u64 }
//!
//! impl Aggregator for Counter {
//!     const NAME: &'static str = "counter";
//!     fn configure(config: &mut Table) -> Result<Self, String> {
//!         Ok(Counter {
//!             threshold: config.u64("threshold")?.unwrap_or(3),
//!             window_ms: config.duration_ms("window")?.unwrap_or(60_000),
//!         })
//!     }
//!     fn aggregate(&self, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
//!         let mut alerts = Vec::new();
//!         for e in events {
//!             let hit = state::window_add(&e.error_code, 1, e.received_at, self.window_ms, self.threshold);
//!             if hit.fires > 0 {
//!                 alerts.push(Alert::new(&e.error_code, self.threshold, e.severity, "too many errors"));
//!             }
//!         }
//!         Ok(alerts)
//!     }
//! }
//! tocsin_plugin_sdk::export_aggregator!(Counter);
//! # fn main() {}
//! ```

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "aggregator",
        pub_export_macro: true,
        export_macro_name: "__tocsin_export_aggregator",
        default_bindings_module: "tocsin_plugin_sdk::aggregator::bindings",
        runtime_path: "tocsin_plugin_sdk::__wit_bindgen::rt",
    });
}

pub use bindings::tocsin::plugin::types::{Alert, ErrorEvent, Severity};

use crate::config::Table;

/// One binding of an aggregator: its settings, and what it does with them.
///
/// The host calls [`Aggregator::configure`] for every rule that uses the
/// plugin (and again when the rule changes), then [`Aggregator::aggregate`]
/// with batches of that rule's matched events, oldest first. Keep counts in
/// [`crate::state`], not in `self`: an instance is thrown away after a
/// trap and on a plugin swap, and several tocsin instances share the state.
pub trait Aggregator: Sized + 'static {
    /// The plugin's name, the prefix of its error messages.
    const NAME: &'static str;

    /// Reads the binding's settings. Keys not read are refused afterwards
    /// with the list of accepted ones, so typos do not pass silently.
    fn configure(config: &mut Table) -> Result<Self, String>;

    /// The alerts `events` complete. An error fails the whole batch (the
    /// events are counted as plugin errors and not retried).
    fn aggregate(&self, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String>;

    /// Parses configuration text the way the host's `configure` call does
    /// (for tests: `Counter::from_json(r#"{"threshold": 2}"#)`).
    fn from_json(json: &str) -> Result<Self, String> {
        crate::config::read(Self::NAME, json, Self::configure)
    }
}

/// Exports an [`Aggregator`] as the component's `aggregator` world.
#[macro_export]
macro_rules! export_aggregator {
    ($plugin:ty) => {
        const _: () = {
            type Plugin = $plugin;
            thread_local! {
                static CONFIGS: $crate::Registry<Plugin> = const {
                    $crate::Registry::new(<Plugin as $crate::aggregator::Aggregator>::NAME)
                };
            }
            struct Component;
            impl $crate::aggregator::bindings::Guest for Component {
                fn configure(binding: String, config: String) -> Result<(), String> {
                    let c = <Plugin as $crate::aggregator::Aggregator>::from_json(&config)?;
                    CONFIGS.with(|r| r.insert(&binding, c));
                    Ok(())
                }
                fn aggregate(
                    binding: String,
                    events: Vec<$crate::aggregator::ErrorEvent>,
                ) -> Result<Vec<$crate::aggregator::Alert>, String> {
                    let c = CONFIGS.with(|r| r.get(&binding))?;
                    $crate::aggregator::Aggregator::aggregate(&*c, events)
                }
            }
            $crate::aggregator::bindings::__tocsin_export_aggregator!(Component);
        };
    };
}

impl Alert {
    /// An alert for `key` with `count` events: the first and last seen
    /// times, summary, samples and labels empty, to fill in as needed. The
    /// host sets `rule`.
    pub fn new(key: &str, count: u64, severity: Severity, title: &str) -> Alert {
        Alert {
            key: key.to_string(),
            rule: String::new(),
            count,
            first_seen: 0,
            last_seen: 0,
            severity,
            title: title.to_string(),
            summary: String::new(),
            samples: Vec::new(),
            labels: Vec::new(),
        }
    }
}
