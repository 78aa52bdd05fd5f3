//! The `channel` world: an alert in, deliveries out through the host's
//! capabilities ([`crate::websocket`], [`crate::email`], [`crate::http`]),
//! each limited by the rule's grants and sent by the host's durable outbox
//! after the call returns.
//!
//! ```
//! use tocsin_plugin_sdk::channel::{Alert, Channel};
//! use tocsin_plugin_sdk::{websocket, Table};
//!
//! struct Shout { prefix: String }
//!
//! impl Channel for Shout {
//!     const NAME: &'static str = "shout";
//!     fn configure(config: &mut Table) -> Result<Self, String> {
//!         Ok(Shout { prefix: config.string("prefix")?.unwrap_or_else(|| "ALERT".into()) })
//!     }
//!     fn deliver(&self, alert: Alert) -> Result<(), String> {
//!         websocket::broadcast(&format!("{}: {}", self.prefix, alert.title))
//!     }
//! }
//! tocsin_plugin_sdk::export_channel!(Shout);
//! # fn main() {}
//! ```

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "channel",
        pub_export_macro: true,
        export_macro_name: "__tocsin_export_channel",
        default_bindings_module: "tocsin_plugin_sdk::channel::bindings",
        runtime_path: "tocsin_plugin_sdk::__wit_bindgen::rt",
    });
}

pub use bindings::tocsin::plugin::types::{Alert, Severity};

use crate::config::Table;

/// One binding of a channel: its settings and its rendering.
pub trait Channel: Sized + 'static {
    /// The plugin's name, the prefix of its error messages.
    const NAME: &'static str;

    /// Reads the binding's settings (unread keys are refused afterwards).
    fn configure(config: &mut Table) -> Result<Self, String>;

    /// Renders `alert` and hands it to the host's capabilities. An error
    /// fails this delivery only.
    fn deliver(&self, alert: Alert) -> Result<(), String>;

    /// Parses configuration text the way the host's `configure` call does.
    fn from_json(json: &str) -> Result<Self, String> {
        crate::config::read(Self::NAME, json, Self::configure)
    }
}

/// Exports a [`Channel`] as the component's `channel` world.
#[macro_export]
macro_rules! export_channel {
    ($plugin:ty) => {
        const _: () = {
            type Plugin = $plugin;
            thread_local! {
                static CONFIGS: $crate::Registry<Plugin> = const {
                    $crate::Registry::new(<Plugin as $crate::channel::Channel>::NAME)
                };
            }
            struct Component;
            impl $crate::channel::bindings::Guest for Component {
                fn configure(binding: String, config: String) -> Result<(), String> {
                    let c = <Plugin as $crate::channel::Channel>::from_json(&config)?;
                    CONFIGS.with(|r| r.insert(&binding, c));
                    Ok(())
                }
                fn deliver(binding: String, alert: $crate::channel::Alert) -> Result<(), String> {
                    let c = CONFIGS.with(|r| r.get(&binding))?;
                    $crate::channel::Channel::deliver(&*c, alert)
                }
            }
            $crate::channel::bindings::__tocsin_export_channel!(Component);
        };
    };
}
