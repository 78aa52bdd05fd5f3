//! Turning one rule file into an [`ActiveRule`]: parse, check names,
//! bind each stage to a loaded plugin of the right world, and let every
//! plugin accept its configuration before the rule may serve.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::rule::{self, Matcher, RuleSpec};
use super::{stem, ActiveRule, Catalog, ChannelBinding, EscalationStep, RuleBinding};
use crate::event::now_ms;
use crate::interval::Schedule;
use crate::plugin::instance::BindingConfig;
use crate::plugin::{Instances, World};

impl Catalog {
    /// Parses and validates one rule file against the loaded plugins.
    pub(super) async fn compile_rule(
        &self,
        path: &Path,
        text: &str,
        hash: &str,
        taken: &HashSet<String>,
    ) -> Result<ActiveRule, String> {
        let spec: RuleSpec = rule::parse(text)?;
        let name = spec.name.clone().unwrap_or_else(|| stem(path));
        if !rule::valid_name(&name) {
            return Err(format!(
                "rule name {name:?} may only hold letters, digits, `-`, `_` and `.`"
            ));
        }
        if taken.contains(&name) {
            return Err(format!(
                "rule name `{name}` is already used by another file"
            ));
        }
        let matcher = Matcher::compile(&spec.matcher)?;
        let resolve_after_ms = spec.resolve_after_ms()?;
        let rule_name: Arc<str> = Arc::from(name.as_str());
        let mut bindings = Vec::new();
        let mut plugin_hashes = BTreeMap::new();

        let mut bind = |field: &str,
                        plugin: &str,
                        world: World,
                        id: String,
                        config: &toml::Table|
         -> Result<RuleBinding, String> {
            let loaded = self.loaded(plugin).ok_or_else(|| {
                let known: Vec<&String> = self
                    .plugins
                    .iter()
                    .filter(|(_, e)| e.current.is_some())
                    .map(|(k, _)| k)
                    .collect();
                format!(
                    "{field}: no plugin `{plugin}` is loaded from {} (loaded: {known:?})",
                    self.plugins_dir.display()
                )
            })?;
            if loaded.world != world {
                return Err(format!(
                    "{field}: plugin `{plugin}` is a {} plugin, a {world} is needed here",
                    loaded.world
                ));
            }
            let config_json =
                serde_json::to_string(config).map_err(|e| format!("{field}.config: {e}"))?;
            plugin_hashes.insert(plugin.to_string(), loaded.hash.clone());
            bindings.push((
                plugin.to_string(),
                BindingConfig {
                    id: id.clone(),
                    rule: rule_name.clone(),
                    config_json,
                },
            ));
            Ok(RuleBinding {
                plugin: plugin.to_string(),
                binding: id,
            })
        };

        let aggregate = bind(
            "aggregate",
            &spec.aggregate.plugin,
            World::Aggregator,
            name.clone(),
            &spec.aggregate.config,
        )?;
        let route = match &spec.route {
            Some(r) => Some(bind(
                "route",
                &r.plugin,
                World::Router,
                name.clone(),
                &r.config,
            )?),
            None => None,
        };
        let mut channels = Vec::new();
        let mut channel_names = Vec::new();
        for (i, c) in spec.channels.iter().enumerate() {
            let cname = c.name.clone().unwrap_or_else(|| c.plugin.clone());
            if !rule::valid_name(&cname) {
                return Err(format!(
                    "channels[{i}]: name {cname:?} may only hold letters, digits, `-`, `_` and `.`"
                ));
            }
            if channel_names.contains(&cname) {
                return Err(format!(
                    "channels[{i}]: channel name `{cname}` appears twice; give one a `name`"
                ));
            }
            let target = bind(
                &format!("channels[{i}]"),
                &c.plugin,
                World::Channel,
                format!("{name}/{cname}"),
                &c.config,
            )?;
            let retry = c
                .retry
                .resolve(self.default_retry)
                .map_err(|e| format!("channels[{i}].{e}"))?;
            channels.push(ChannelBinding {
                name: Arc::from(cname.as_str()),
                target,
                grants: Arc::new(c.grants.clone()),
                retry,
                schedule: Schedule {
                    mute_times: c.mute_times.clone(),
                    active_times: c.active_times.clone(),
                },
            });
            channel_names.push(cname);
        }
        let escalation = escalation_steps(&spec, &mut channels, &mut channel_names)?;
        let group = spec.group.as_ref().map(|g| g.grouping()).transpose()?;
        for (plugin, binding) in &bindings {
            if let Some(p) = self.loaded(plugin) {
                Instances::check_configure(&self.rt, p, binding)
                    .await
                    .map_err(|e| {
                        format!(
                            "binding `{}` rejected by plugin `{plugin}`: {}",
                            binding.id,
                            plugin_message(&e)
                        )
                    })?;
            }
        }
        Ok(ActiveRule {
            name: rule_name,
            file: path.to_path_buf(),
            hash: hash.to_string(),
            loaded_at: now_ms(),
            description: spec.description,
            enabled: spec.enabled,
            matcher,
            aggregate,
            route,
            channels,
            channel_names,
            resolve_after_ms,
            schedule: Schedule {
                mute_times: spec.mute_times.clone(),
                active_times: spec.active_times.clone(),
            },
            escalation,
            group,
            bindings,
            plugin_hashes,
        })
    }
}

/// The rule's escalation steps, each with the channels it names; those
/// channels leave `channels` (and the names offered to the router): only
/// their steps call them. Steps must come later one after the other.
fn escalation_steps(
    spec: &RuleSpec,
    channels: &mut Vec<ChannelBinding>,
    channel_names: &mut Vec<String>,
) -> Result<Vec<EscalationStep>, String> {
    let mut steps = Vec::with_capacity(spec.escalation.len());
    let mut last = 0;
    for (i, s) in spec.escalation.iter().enumerate() {
        let at = format!("escalation[{i}]");
        let after_ms = humantime::parse_duration(&s.after)
            .map_err(|e| format!("{at}.after: {:?}: {e} (use e.g. 15m, 1h)", s.after))?
            .as_millis() as u64;
        if after_ms <= last {
            return Err(format!(
                "{at}.after: {:?} must come after the previous step (and after 0, the first notification)",
                s.after
            ));
        }
        last = after_ms;
        if s.channels.is_empty() {
            return Err(format!(
                "{at}.channels: name at least one of the rule's channels"
            ));
        }
        let mut step = EscalationStep {
            after_ms,
            channels: Vec::new(),
        };
        for name in &s.channels {
            let c = channels
                .iter()
                .find(|c| *c.name == **name)
                .or_else(|| steps.iter().flat_map(|s: &EscalationStep| &s.channels).find(|c| *c.name == **name))
                .cloned()
                .ok_or_else(|| format!("{at}.channels: no channel `{name}` in this rule (channels: {channel_names:?})"))?;
            step.channels.push(c);
        }
        steps.push(step);
    }
    let escalated: Vec<Arc<str>> = steps
        .iter()
        .flat_map(|s| s.channels.iter().map(|c| c.name.clone()))
        .collect();
    channels.retain(|c| !escalated.contains(&c.name));
    channel_names.retain(|n| !escalated.iter().any(|e| **e == **n));
    Ok(steps)
}

/// The plugin's own message for a returned error, the full error otherwise.
fn plugin_message(e: &crate::plugin::CallError) -> String {
    match e {
        crate::plugin::CallError::Returned { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
