//! The catalog: what is loaded from the plugins and rules directories, and
//! the immutable [`Generation`] the pipeline runs on.
//!
//! A reload reads every file, skips those whose content hash did not change,
//! validates the rest (plugins compile and link; rules parse, reference
//! loaded plugins of the right world, and their configuration is accepted by
//! the plugin), then publishes a new generation with one atomic pointer
//! swap. Work in flight finishes on the generation it started with. A file
//! that fails validation never replaces a good one: the previous version
//! keeps serving and the error is kept for the status API.

mod background;
mod compile;
mod generation;
mod policy;
mod purge;
pub mod rule;
mod status;
pub mod watcher;

pub use generation::{ActiveRule, ChannelBinding, EscalationStep, Generation, RuleBinding};
pub use policy::PolicyStatus;
pub use status::{PluginStatus, RuleStatus};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::plugin::instance::BindingConfig;
use crate::plugin::loader::content_hash as content_hash_of;
use crate::plugin::{Instances, LoadedPlugin, Runtime};

/// One watched file: the version serving, and why the file on disk is not.
struct Entry<T> {
    file: PathBuf,
    current: Option<Arc<T>>,
    last_error: Option<String>,
    /// Hash of the bytes that failed, so an unchanged bad file is not retried.
    failed_hash: Option<String>,
    /// What the file waits for before it can be validated.
    waiting: Option<String>,
}

type PluginEntry = Entry<LoadedPlugin>;
type RuleEntry = Entry<ActiveRule>;

impl<T> Entry<T> {
    fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            current: None,
            last_error: None,
            failed_hash: None,
            waiting: None,
        }
    }

    /// A new version validated: it serves from now on.
    fn loaded(&mut self, value: Arc<T>, kind: &'static str) {
        self.current = Some(value);
        self.last_error = None;
        self.failed_hash = None;
        self.waiting = None;
        metrics::counter!("tocsin_reloads_total", "kind" => kind, "result" => "ok").increment(1);
    }

    /// The file on disk (content `hash`) was refused: keep serving the
    /// previous version and remember why.
    fn refused(
        &mut self,
        error: &str,
        hash: String,
        kind: &'static str,
        report: &mut ReloadReport,
    ) {
        let serving = if self.current.is_some() {
            "; the previous version keeps serving"
        } else {
            ""
        };
        let msg = format!("{}: {error}{serving}", self.file.display());
        report.errors.push(msg.clone());
        self.last_error = Some(msg);
        self.failed_hash = Some(hash);
        self.waiting = None;
        metrics::counter!("tocsin_reloads_total", "kind" => kind, "result" => "error").increment(1);
    }
}

/// What one reload did, for logs and tests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    pub changed: Vec<String>,
    pub errors: Vec<String>,
}

/// The loader's state; one per engine, driven by the watcher.
pub struct Catalog {
    rt: Runtime,
    plugins_dir: PathBuf,
    rules_dir: PathBuf,
    plugins: BTreeMap<String, PluginEntry>,
    rules: BTreeMap<PathBuf, RuleEntry>,
    /// Policy files of the rules directory ([`policy`]).
    policies: BTreeMap<PathBuf, Entry<policy::PolicyFile>>,
    current: Arc<ArcSwap<Generation>>,
    next_id: u64,
    default_retry: crate::deliver::RetryPolicy,
    compiler: background::Compiler,
    /// Drops removed rules' state ([`purge`]).
    purger: purge::Purger,
    /// The other end of the compiler's wake-ups, until the watcher takes it.
    wake: (
        tokio::sync::mpsc::UnboundedSender<()>,
        Option<tokio::sync::mpsc::UnboundedReceiver<()>>,
    ),
}

fn list(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext) && p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Catalog {
    /// A catalog over the two directories; nothing loaded until [`Self::reload`].
    pub fn new(rt: Runtime, plugins_dir: PathBuf, rules_dir: PathBuf) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            compiler: background::Compiler::new(tx.clone()),
            purger: purge::Purger::default(),
            wake: (tx, Some(rx)),
            rt,
            plugins_dir,
            rules_dir,
            plugins: BTreeMap::new(),
            rules: BTreeMap::new(),
            policies: BTreeMap::new(),
            current: Arc::new(ArcSwap::from_pointee(Generation::empty())),
            next_id: 1,
            default_retry: crate::deliver::RetryPolicy::default(),
        }
    }

    /// Sets the retry policy of channels whose rule sets none (`[delivery]`).
    pub fn with_default_retry(mut self, policy: crate::deliver::RetryPolicy) -> Self {
        self.default_retry = policy;
        self
    }

    /// Drops a removed rule's state once it has been gone for `after`
    /// ([`purge`]); a running engine's choice, never `tocsin check`'s.
    pub fn with_purge_after(mut self, after: std::time::Duration) -> Self {
        self.purger.set_after(after);
        self
    }

    /// Compile large uncached plugins in the background ([`background`])
    /// instead of inline: a running engine's choice; `tocsin check` waits.
    pub fn with_background_compiles(mut self, on: bool) -> Self {
        self.compiler.enabled = on;
        self
    }

    /// The reload trigger: a sender for file-change notifications, and
    /// (once) the receiver, on which finished background compiles also
    /// arrive.
    pub fn wake_channel(
        &mut self,
    ) -> (
        tokio::sync::mpsc::UnboundedSender<()>,
        Option<tokio::sync::mpsc::UnboundedReceiver<()>>,
    ) {
        (self.wake.0.clone(), self.wake.1.take())
    }

    /// The shared pointer the pipeline reads the current generation from.
    pub fn generation(&self) -> Arc<ArcSwap<Generation>> {
        self.current.clone()
    }

    /// The directories watched.
    pub fn dirs(&self) -> (&Path, &Path) {
        (&self.plugins_dir, &self.rules_dir)
    }

    /// Re-reads both directories and publishes a new generation if anything
    /// changed.
    pub async fn reload(&mut self) -> ReloadReport {
        let mut report = ReloadReport::default();
        let plugins_changed = self.reload_plugins(&mut report).await;
        let rules_changed = self.reload_rules(&mut report, plugins_changed).await;
        if plugins_changed || rules_changed {
            self.publish();
        }
        if rules_changed {
            let names = self
                .rules
                .values()
                .filter_map(|e| e.current.as_ref().map(|r| r.name.to_string()))
                .collect();
            self.purger.observe(self.rt.state(), names);
        }
        report.generation = self.current.load().id;
        for e in &report.errors {
            tracing::error!("reload: {e}");
        }
        report
    }

    async fn reload_plugins(&mut self, report: &mut ReloadReport) -> bool {
        let files = match list(&self.plugins_dir, "wasm") {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(format!("plugins directory {e}"));
                return false;
            }
        };
        let mut changed = false;
        let present: HashSet<String> = files.iter().map(|p| stem(p)).collect();
        let gone: Vec<String> = self
            .plugins
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for name in gone {
            tracing::info!(plugin = %name, "plugin file removed; unloaded");
            self.plugins.remove(&name);
            report.changed.push(format!("plugin {name} unloaded"));
            metrics::counter!("tocsin_reloads_total", "kind" => "plugin", "result" => "unloaded")
                .increment(1);
            changed = true;
        }
        let mut hashes = HashSet::new();
        for path in files {
            let name = stem(&path);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    let entry = self.plugin_entry(&name, &path);
                    entry.last_error = Some(format!("{}: cannot read: {e}", path.display()));
                    continue;
                }
            };
            let hash = content_hash_of(&bytes);
            hashes.insert(hash.clone());
            let entry = self.plugin_entry(&name, &path);
            if entry.current.as_ref().is_some_and(|c| c.hash == hash) {
                // Same bytes as the serving version (e.g. a bad copy was
                // reverted): nothing to do but clear the error.
                entry.last_error = None;
                entry.failed_hash = None;
                continue;
            }
            if entry.failed_hash.as_deref() == Some(hash.as_str()) {
                continue;
            }
            let result = match self.compiler.take(&hash) {
                Some(outcome) => outcome,
                None if self.compiler.should_defer(&self.rt, &hash, &bytes) => {
                    self.compiler.start(&self.rt, &name, &hash, bytes);
                    continue;
                }
                None => self
                    .rt
                    .load_plugin(&name, &bytes)
                    .map_err(|e| e.to_string()),
            };
            let result = match result {
                Ok(p) => self.check_plugin_against_rules(Arc::new(p)).await,
                Err(e) => Err(e),
            };
            let entry = self.plugin_entry(&name, &path);
            match result {
                Ok(plugin) => {
                    tracing::info!(plugin = %name, world = %plugin.world, hash = %&plugin.hash[..12], cached = plugin.cached, compile_ms = plugin.compile_ms, "plugin loaded");
                    report.changed.push(format!("plugin {name} loaded"));
                    entry.loaded(plugin, "plugin");
                    changed = true;
                }
                Err(e) => entry.refused(&e, hash, "plugin", report),
            }
        }
        self.compiler.retain(|h| hashes.contains(h));
        changed
    }

    fn plugin_entry(&mut self, name: &str, path: &Path) -> &mut PluginEntry {
        self.plugins
            .entry(name.to_string())
            .or_insert_with(|| Entry::new(path))
    }

    /// A new plugin version must accept the configuration of every active
    /// rule that uses it, or it is refused (the old version keeps serving).
    async fn check_plugin_against_rules(
        &self,
        plugin: Arc<LoadedPlugin>,
    ) -> Result<Arc<LoadedPlugin>, String> {
        for entry in self.rules.values() {
            let Some(rule) = &entry.current else { continue };
            for (plugin_name, binding) in &rule.bindings {
                if *plugin_name != plugin.name {
                    continue;
                }
                if let Err(e) = Instances::check_configure(&self.rt, &plugin, binding).await {
                    return Err(format!(
                        "rule `{}` binding `{}`: {e}",
                        rule.name, binding.id
                    ));
                }
            }
        }
        Ok(plugin)
    }

    fn loaded(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(name).and_then(|e| e.current.as_ref())
    }

    async fn reload_rules(&mut self, report: &mut ReloadReport, plugins_changed: bool) -> bool {
        let mut files = match list(&self.rules_dir, "toml") {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(format!("rules directory {e}"));
                return false;
            }
        };
        let mut changed = self.reload_policies(&mut files, report);
        let present: HashSet<&PathBuf> = files.iter().collect();
        let gone: Vec<PathBuf> = self
            .rules
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for path in gone {
            tracing::info!(file = %path.display(), "rule file removed; unloaded");
            self.rules.remove(&path);
            report
                .changed
                .push(format!("rule {} unloaded", path.display()));
            metrics::counter!("tocsin_reloads_total", "kind" => "rule", "result" => "unloaded")
                .increment(1);
            changed = true;
        }
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    let entry = self.rule_entry(&path);
                    entry.last_error = Some(format!("{}: cannot read: {e}", path.display()));
                    continue;
                }
            };
            let hash = content_hash_of(text.as_bytes());
            let up_to_date = self.rules.get(&path).is_some_and(|e| {
                e.current.as_ref().is_some_and(|r| {
                    r.hash == hash
                        && r.plugin_hashes
                            .iter()
                            .all(|(n, h)| self.loaded(n).is_some_and(|p| &p.hash == h))
                })
            });
            if up_to_date {
                if let Some(e) = self.rules.get_mut(&path) {
                    e.last_error = None;
                    e.failed_hash = None;
                }
                continue;
            }
            // A file that failed before is retried only if it or the plugins changed.
            let failed_before = self
                .rules
                .get(&path)
                .is_some_and(|e| e.failed_hash.as_deref() == Some(hash.as_str()));
            if failed_before && !plugins_changed {
                continue;
            }
            let taken: HashSet<String> = self
                .rules
                .iter()
                .filter(|(p, _)| **p != path)
                .filter_map(|(_, e)| e.current.as_ref().map(|r| r.name.to_string()))
                .collect();
            if let Some(waiting) = self.waiting_for(&text) {
                let entry = self.rule_entry(&path);
                entry.last_error = None;
                entry.waiting = Some(waiting);
                continue;
            }
            let result = self.compile_rule(&path, &text, &hash, &taken).await;
            let entry = self.rule_entry(&path);
            match result {
                Ok(rule) => {
                    tracing::info!(rule = %rule.name, file = %path.display(), "rule loaded");
                    report.changed.push(format!("rule {} loaded", rule.name));
                    entry.loaded(Arc::new(rule), "rule");
                    changed = true;
                }
                Err(e) => entry.refused(&e, hash, "rule", report),
            }
        }
        changed
    }

    fn rule_entry(&mut self, path: &Path) -> &mut RuleEntry {
        self.rules
            .entry(path.to_path_buf())
            .or_insert_with(|| Entry::new(path))
    }

    /// Builds and swaps in a generation of every rule whose plugins are loaded.
    fn publish(&mut self) {
        let plugins: HashMap<String, Arc<LoadedPlugin>> = self
            .plugins
            .iter()
            .filter_map(|(k, e)| e.current.clone().map(|p| (k.clone(), p)))
            .collect();
        let mut rules = Vec::new();
        let mut bindings: HashMap<String, Vec<BindingConfig>> = HashMap::new();
        let intervals = self.current_intervals();
        for entry in self.rules.values_mut() {
            let Some(rule) = &entry.current else { continue };
            let missing: Vec<&String> = rule
                .plugin_hashes
                .keys()
                .filter(|n| !plugins.contains_key(*n))
                .collect();
            if !missing.is_empty() {
                entry.last_error = Some(format!(
                    "rule `{}` is inactive: plugin(s) {missing:?} not loaded",
                    rule.name
                ));
                continue;
            }
            let unknown: Vec<&String> = rule
                .interval_names()
                .filter(|n| !intervals.contains_key(*n))
                .collect();
            if !unknown.is_empty() {
                entry.last_error = Some(format!(
                    "rule `{}` is inactive: time interval(s) {unknown:?} not defined by any policy file of the rules directory",
                    rule.name
                ));
                continue;
            }
            for (plugin, b) in &rule.bindings {
                bindings.entry(plugin.clone()).or_default().push(b.clone());
            }
            rules.push(rule.clone());
        }
        let id = self.next_id;
        self.next_id += 1;
        tracing::info!(
            generation = id,
            rules = rules.len(),
            plugins = plugins.len(),
            "generation published"
        );
        metrics::gauge!("tocsin_rules_active").set(rules.len() as f64);
        metrics::gauge!("tocsin_plugins_loaded").set(plugins.len() as f64);
        self.current.store(Arc::new(Generation {
            id,
            rules,
            plugins,
            bindings,
            inhibitions: self.current_inhibitions(),
            intervals,
        }));
    }
}
