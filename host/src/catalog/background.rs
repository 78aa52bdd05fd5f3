//! Compiling large plugins off the reload path.
//!
//! Why: a Python or JavaScript component is 12–18 MB and takes tens of
//! seconds to compile. Compiled inline, it would hold the engine's start-up
//! (nothing served, not even the API) and every later reload behind it.
//! Instead a plugin that is large and not in the compile cache compiles on
//! a blocking thread; the reload goes on with everything else, rules that
//! need the plugin wait (and say so in `/v1/rules`), and the finished
//! compile wakes the watcher, whose next reload picks the result up. Small
//! plugins (every Rust one) and cached artifacts still load inline, in
//! milliseconds, so a hot swap of them stays synchronous.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::plugin::{LoadedPlugin, Runtime};

/// Components at least this large compile in the background when their
/// artifact is not cached.
pub const BACKGROUND_BYTES: usize = 1 << 20;

/// A finished compile: the plugin, or why it failed.
type Outcome = Result<LoadedPlugin, String>;

/// Compiles in flight and finished, by content hash.
pub(super) struct Compiler {
    /// Off for `tocsin check`, which must see every verdict before it ends.
    pub enabled: bool,
    /// hash → (plugin name, when it started), while compiling.
    running: HashMap<String, (String, Instant)>,
    /// Finished compiles, taken by the next reload.
    done: Arc<Mutex<HashMap<String, Outcome>>>,
    /// Wakes the watcher's reload loop when a compile finishes.
    wake: mpsc::UnboundedSender<()>,
}

impl Compiler {
    /// A compiler that wakes `wake` when a compile finishes.
    pub fn new(wake: mpsc::UnboundedSender<()>) -> Self {
        Self {
            enabled: false,
            running: HashMap::new(),
            done: Arc::default(),
            wake,
        }
    }

    /// Whether `bytes` (content `hash`) should compile in the background.
    pub fn should_defer(&self, rt: &Runtime, hash: &str, bytes: &[u8]) -> bool {
        self.enabled && bytes.len() >= BACKGROUND_BYTES && !rt.is_compiled(hash)
    }

    /// The finished compile of `hash`, if there is one.
    pub fn take(&mut self, hash: &str) -> Option<Outcome> {
        let outcome = self.done.lock().ok()?.remove(hash)?;
        self.running.remove(hash);
        Some(outcome)
    }

    /// Starts compiling `bytes` as plugin `name` unless it already is.
    pub fn start(&mut self, rt: &Runtime, name: &str, hash: &str, bytes: Vec<u8>) {
        if self.running.contains_key(hash) {
            return;
        }
        tracing::info!(plugin = %name, hash = %&hash[..12], size = bytes.len(), "compiling in the background; rules that use it wait");
        metrics::gauge!("tocsin_plugins_compiling").increment(1.0);
        self.running
            .insert(hash.to_string(), (name.to_string(), Instant::now()));
        let (rt, name, hash) = (rt.clone(), name.to_string(), hash.to_string());
        let (done, wake) = (self.done.clone(), self.wake.clone());
        tokio::task::spawn_blocking(move || {
            let outcome = rt.load_plugin(&name, &bytes).map_err(|e| e.to_string());
            metrics::gauge!("tocsin_plugins_compiling").decrement(1.0);
            if let Ok(mut done) = done.lock() {
                done.insert(hash, outcome);
            }
            let _ = wake.send(());
        });
    }

    /// Forgets compiles of hashes `keep` says false for (a file replaced
    /// or removed while compiling): their result is dropped when it lands.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.running.retain(|hash, _| keep(hash));
        if let Ok(mut done) = self.done.lock() {
            done.retain(|hash, _| keep(hash));
        }
    }

    /// Seconds plugin `name` has been compiling, if it is.
    pub fn compiling(&self, name: &str) -> Option<u64> {
        self.running
            .values()
            .find(|(n, _)| n == name)
            .map(|(_, since)| since.elapsed().as_secs())
    }
}

impl super::Catalog {
    /// What the rule in `text` waits for: a plugin it uses that is not
    /// loaded and is compiling. None when it can be validated now (also
    /// when it does not parse: validation says why).
    pub(super) fn waiting_for(&self, text: &str) -> Option<String> {
        let spec = super::rule::parse(text).ok()?;
        let plugins = std::iter::once(&spec.aggregate.plugin)
            .chain(spec.route.iter().map(|r| &r.plugin))
            .chain(spec.channels.iter().map(|c| &c.plugin));
        for plugin in plugins {
            if self.loaded(plugin).is_some() {
                continue;
            }
            if let Some(secs) = self.compiler.compiling(plugin) {
                return Some(format!(
                    "waiting for plugin `{plugin}` to compile ({secs} s so far); the rule serves when it is done"
                ));
            }
        }
        None
    }
}
