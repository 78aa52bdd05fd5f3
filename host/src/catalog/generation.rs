//! What the pipeline runs on: an immutable [`Generation`] of validated
//! rules ([`ActiveRule`]) and the plugins they bind, swapped in whole by
//! the catalog so a batch never sees half a reload.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::rule::Matcher;
use crate::plugin::instance::BindingConfig;
use crate::plugin::{Grants, LoadedPlugin};

/// A plugin binding inside an active rule.
#[derive(Clone, Debug)]
pub struct RuleBinding {
    /// Plugin name (file stem).
    pub plugin: String,
    /// Id passed to the plugin's `configure` and calls.
    pub binding: String,
}

/// One channel of an active rule.
#[derive(Clone, Debug)]
pub struct ChannelBinding {
    pub name: Arc<str>,
    pub target: RuleBinding,
    pub grants: Arc<Grants>,
    pub retry: crate::deliver::RetryPolicy,
    /// When the channel is called (`mute-times`, `active-times`).
    pub schedule: crate::interval::Schedule,
}

/// One escalation step of a rule: its channels, called once when an
/// alert has stayed active and unacknowledged `after_ms` since it first
/// fired.
#[derive(Clone, Debug)]
pub struct EscalationStep {
    pub after_ms: u64,
    pub channels: Vec<ChannelBinding>,
}

/// A validated rule, as the pipeline runs it.
#[derive(Debug)]
pub struct ActiveRule {
    pub name: Arc<str>,
    pub file: PathBuf,
    pub hash: String,
    pub loaded_at: i64,
    pub description: String,
    pub enabled: bool,
    pub matcher: Matcher,
    pub aggregate: RuleBinding,
    pub route: Option<RuleBinding>,
    pub channels: Vec<ChannelBinding>,
    /// Channel names, in rule order, as offered to the router.
    pub channel_names: Vec<String>,
    /// How long an alert stays active after it last fired
    /// (`resolve-after`; [`crate::active`]).
    pub resolve_after_ms: u64,
    /// When the rule's alerts are notified (`mute-times`, `active-times`).
    pub schedule: crate::interval::Schedule,
    /// Escalation steps, in order ([`crate::pipeline::escalate`]).
    pub escalation: Vec<EscalationStep>,
    /// Grouping of its notifications, if it groups ([`crate::group`]).
    pub group: Option<crate::group::Grouping>,
    /// Every binding of this rule with its configuration JSON, per plugin.
    pub(super) bindings: Vec<(String, BindingConfig)>,
    /// Content hashes of the plugins this version was validated against.
    pub(super) plugin_hashes: BTreeMap<String, String>,
}

impl ActiveRule {
    /// True when this rule takes `event`: its matcher says so, and the
    /// event is not meant for other rules only ([`Event::only_rules`]).
    pub fn takes(&self, event: &crate::event::Event) -> bool {
        self.matcher.matches(event)
            && event
                .only_rules
                .as_ref()
                .is_none_or(|only| only.iter().any(|n| **n == *self.name))
    }

    /// This version of the rule: its content and its plugins' hashes
    /// (another version of either is another rule to the isolation,
    /// [`crate::pipeline::isolate`]).
    pub fn version(&self) -> String {
        let plugins: Vec<&str> = self.plugin_hashes.values().map(String::as_str).collect();
        format!("{}:{}", self.hash, plugins.join(","))
    }

    /// Every time interval the rule and its channels name.
    pub fn interval_names(&self) -> impl Iterator<Item = &String> {
        let escalated = self.escalation.iter().flat_map(|s| &s.channels);
        self.schedule.names().chain(
            self.channels
                .iter()
                .chain(escalated)
                .flat_map(|c| c.schedule.names()),
        )
    }
}

/// An immutable snapshot of everything loaded; swapped atomically.
pub struct Generation {
    pub id: u64,
    pub rules: Vec<Arc<ActiveRule>>,
    pub plugins: HashMap<String, Arc<LoadedPlugin>>,
    /// Every binding of every active rule, by plugin name.
    pub bindings: HashMap<String, Vec<BindingConfig>>,
    /// The inhibition rules of the rules directory.
    pub inhibitions: Arc<crate::inhibit::Inhibitions>,
    /// The named time intervals of the rules directory.
    pub intervals: Arc<crate::interval::Intervals>,
}

impl Generation {
    /// An empty generation (nothing loaded yet).
    pub fn empty() -> Self {
        Self {
            id: 0,
            rules: Vec::new(),
            plugins: HashMap::new(),
            bindings: HashMap::new(),
            inhibitions: Arc::default(),
            intervals: Arc::default(),
        }
    }

    /// The loaded plugin and all its bindings, for a call.
    pub fn plugin_use(&self, name: &str) -> Option<crate::plugin::instance::PluginUse<'_>> {
        let plugin = self.plugins.get(name)?;
        Some(crate::plugin::instance::PluginUse {
            plugin,
            bindings: self.bindings.get(name).map(Vec::as_slice).unwrap_or(&[]),
            generation: self.id,
        })
    }

    /// True when a plugin version with `hash` is part of this generation.
    pub fn has_hash(&self, hash: &str) -> bool {
        self.plugins.values().any(|p| p.hash == hash)
    }
}
