//! tocsin: an error-alerting engine whose rules are sandboxed WebAssembly
//! plugins.
//!
//! The pipeline reads like the folders: [`source`]s accept events,
//! [`pipeline`] matches rules, aggregates, routes and notifies, [`deliver`]
//! performs the I/O. [`plugin`] runs the WebAssembly components (one module
//! per host capability), [`catalog`] loads and hot-reloads plugins and rules,
//! [`state`] keeps what plugins count, [`cluster`] lets instances share
//! work through Redis, [`api`] serves HTTP, [`watch`] turns tocsin's own
//! conditions into events through its rules, and [`cli`] is the `tocsin`
//! command.

pub mod active;
pub mod api;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod deliver;
pub mod engine;
pub mod event;
pub mod fuzzing;
pub mod group;
pub mod inhibit;
pub mod interval;
pub mod memory;
pub mod pipeline;
pub mod plugin;
pub mod policy;
pub mod shutdown;
pub mod silence;
pub mod source;
pub mod state;
pub mod stats;
pub mod telemetry;
pub mod trace;
pub mod watch;

pub use engine::Engine;
