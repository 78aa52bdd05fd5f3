//! What `/v1/plugins`, `/v1/rules` and `tocsin check` show of the catalog:
//! per file, the version serving and why the file on disk is not (an
//! error, or a plugin still compiling).

use std::collections::HashSet;

use serde::Serialize;

use super::{stem, Catalog};
use crate::plugin::World;

/// The status API's view of a plugin file.
#[derive(Clone, Debug, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub file: String,
    pub world: Option<World>,
    pub hash: Option<String>,
    pub size: Option<usize>,
    pub loaded_at: Option<i64>,
    pub cached: Option<bool>,
    pub compile_ms: Option<f64>,
    /// Seconds the file on disk has been compiling in the background.
    pub compiling_for_s: Option<u64>,
    /// Why the file on disk is not the version serving (None when it is).
    pub last_error: Option<String>,
}

/// The status API's view of a rule file.
#[derive(Clone, Debug, Serialize)]
pub struct RuleStatus {
    pub name: String,
    pub file: String,
    pub active: bool,
    pub enabled: bool,
    pub hash: Option<String>,
    pub loaded_at: Option<i64>,
    pub aggregate: Option<String>,
    pub route: Option<String>,
    pub channels: Vec<String>,
    pub last_error: Option<String>,
    /// Why the file on disk is not serving yet although nothing is wrong
    /// with it: a plugin it uses is still compiling.
    pub waiting: Option<String>,
}

impl Catalog {
    /// Status of every plugin file seen.
    pub fn plugin_status(&self) -> Vec<PluginStatus> {
        self.plugins
            .iter()
            .map(|(name, e)| {
                let c = e.current.as_ref();
                PluginStatus {
                    name: name.clone(),
                    file: e.file.display().to_string(),
                    world: c.map(|p| p.world),
                    hash: c.map(|p| p.hash.clone()),
                    size: c.map(|p| p.size),
                    loaded_at: c.map(|p| p.loaded_at),
                    cached: c.map(|p| p.cached),
                    compile_ms: c.map(|p| p.compile_ms),
                    compiling_for_s: self.compiler.compiling(name),
                    last_error: e.last_error.clone(),
                }
            })
            .collect()
    }

    /// Status of every rule file seen.
    pub fn rule_status(&self) -> Vec<RuleStatus> {
        let active: HashSet<String> = self
            .current
            .load()
            .rules
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        self.rules
            .iter()
            .map(|(path, e)| {
                let c = e.current.as_ref();
                RuleStatus {
                    name: c.map(|r| r.name.to_string()).unwrap_or_else(|| stem(path)),
                    file: path.display().to_string(),
                    active: c.is_some_and(|r| active.contains(&*r.name)),
                    enabled: c.is_some_and(|r| r.enabled),
                    hash: c.map(|r| r.hash.clone()),
                    loaded_at: c.map(|r| r.loaded_at),
                    aggregate: c.map(|r| r.aggregate.plugin.clone()),
                    route: c.and_then(|r| r.route.as_ref().map(|b| b.plugin.clone())),
                    channels: c.map(|r| r.channel_names.clone()).unwrap_or_default(),
                    last_error: e.last_error.clone(),
                    waiting: e.waiting.clone(),
                }
            })
            .collect()
    }

    /// Every current error, for `tocsin check`.
    pub fn errors(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .plugins
            .values()
            .filter_map(|e| e.last_error.clone())
            .collect();
        out.extend(self.rules.values().filter_map(|e| e.last_error.clone()));
        out.extend(self.policies.values().filter_map(|e| e.last_error.clone()));
        out
    }
}
