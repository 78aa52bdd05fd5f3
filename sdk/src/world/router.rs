//! The `router` world: which of a rule's channels an alert goes to.
//!
//! ```
//! use tocsin_plugin_sdk::router::{Alert, Router, Severity};
//! use tocsin_plugin_sdk::Table;
//!
//! /// Pages only for critical alerts; everything else to the dashboard.
//! struct PageCritical;
//!
//! impl Router for PageCritical {
//!     const NAME: &'static str = "page-critical";
//!     fn configure(_: &mut Table) -> Result<Self, String> { Ok(PageCritical) }
//!     fn route(&self, alert: &Alert, channels: Vec<String>) -> Result<Vec<String>, String> {
//!         Ok(match alert.severity {
//!             Severity::Critical => channels,
//!             _ => channels.into_iter().filter(|c| c == "websocket").collect(),
//!         })
//!     }
//! }
//! tocsin_plugin_sdk::export_router!(PageCritical);
//! # fn main() {}
//! ```

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "router",
        pub_export_macro: true,
        export_macro_name: "__tocsin_export_router",
        default_bindings_module: "tocsin_plugin_sdk::router::bindings",
        runtime_path: "tocsin_plugin_sdk::__wit_bindgen::rt",
    });
}

pub use bindings::tocsin::plugin::types::{Alert, Severity};

use crate::config::Table;

/// One binding of a router: its settings and its choice.
pub trait Router: Sized + 'static {
    /// The plugin's name, the prefix of its error messages.
    const NAME: &'static str;

    /// Reads the binding's settings (unread keys are refused afterwards).
    fn configure(config: &mut Table) -> Result<Self, String>;

    /// The names, among `channels` (the rule's channel entries), that
    /// should deliver `alert`. Unknown names are ignored by the host.
    fn route(&self, alert: &Alert, channels: Vec<String>) -> Result<Vec<String>, String>;

    /// Parses configuration text the way the host's `configure` call does.
    fn from_json(json: &str) -> Result<Self, String> {
        crate::config::read(Self::NAME, json, Self::configure)
    }
}

/// Exports a [`Router`] as the component's `router` world.
#[macro_export]
macro_rules! export_router {
    ($plugin:ty) => {
        const _: () = {
            type Plugin = $plugin;
            thread_local! {
                static CONFIGS: $crate::Registry<Plugin> = const {
                    $crate::Registry::new(<Plugin as $crate::router::Router>::NAME)
                };
            }
            struct Component;
            impl $crate::router::bindings::Guest for Component {
                fn configure(binding: String, config: String) -> Result<(), String> {
                    let c = <Plugin as $crate::router::Router>::from_json(&config)?;
                    CONFIGS.with(|r| r.insert(&binding, c));
                    Ok(())
                }
                fn route(
                    binding: String,
                    alert: $crate::router::Alert,
                    channels: Vec<String>,
                ) -> Result<Vec<String>, String> {
                    let c = CONFIGS.with(|r| r.get(&binding))?;
                    $crate::router::Router::route(&*c, &alert, channels)
                }
            }
            $crate::router::bindings::__tocsin_export_router!(Component);
        };
    };
}
