//! Live plugin instances, owned by one pipeline worker each.
//!
//! Every call runs under the sandbox: a fresh CPU budget (epoch ticks,
//! yielding to tokio at each tick so other tasks keep running) and the
//! memory cap of the store's limiter. A call that traps for any reason takes
//! its instance with it; the next call instantiates a clean one from the
//! `InstancePre`, configured again with the current bindings. An instance
//! whose linear memory has grown past its recycle mark
//! ([`super::SandboxLimits::recycle_mark_of`]) is retired the same way after
//! a call that succeeded, so a guest that leaks is renewed, not trapped.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::{Store, UpdateDeadline};

use super::bindings::{
    aggregator::Aggregator, channel::Channel, router::Router, Alert, ErrorEvent,
};
use super::loader::{LoadedPlugin, PluginPre};
use super::{CallScope, Grants, HostCtx, LimitHit, Runtime};
use crate::deliver::Delivery;

/// One use of a plugin by a rule: the id passed to `configure` and its
/// configuration as JSON text.
#[derive(Clone, Debug)]
pub struct BindingConfig {
    pub id: String,
    pub rule: Arc<str>,
    pub config_json: String,
}

/// What the caller needs to call a plugin: the version, every binding the
/// current generation has for it, and the generation number.
#[derive(Clone, Copy)]
pub struct PluginUse<'a> {
    pub plugin: &'a Arc<LoadedPlugin>,
    pub bindings: &'a [BindingConfig],
    pub generation: u64,
}

/// Why a plugin call failed. Every variant fails only the work of that call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin `{plugin}` ran past its {ms} ms deadline in `{call}` and was stopped")]
    Deadline {
        plugin: String,
        call: &'static str,
        ms: u128,
    },
    #[error("plugin `{plugin}` hit its memory cap in `{call}`: {detail}")]
    Memory {
        plugin: String,
        call: &'static str,
        detail: String,
    },
    #[error("plugin `{plugin}` trapped in `{call}`: {detail}")]
    Trap {
        plugin: String,
        call: &'static str,
        detail: String,
    },
    #[error("plugin `{plugin}` returned an error from `{call}`: {message}")]
    Returned {
        plugin: String,
        call: &'static str,
        message: String,
    },
    #[error("plugin `{plugin}` went over a host quota in `{call}`: {detail}")]
    Quota {
        plugin: String,
        call: &'static str,
        detail: String,
    },
    #[error("plugin `{plugin}` could not be instantiated: {detail}")]
    Instantiate { plugin: String, detail: String },
}

impl CallError {
    /// Short kind for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Deadline { .. } => "deadline",
            CallError::Memory { .. } => "memory",
            CallError::Trap { .. } => "trap",
            CallError::Returned { .. } => "error",
            CallError::Quota { .. } => "quota",
            CallError::Instantiate { .. } => "instantiate",
        }
    }

    /// True when the call did not return (a returned error or a quota
    /// refused after it returned are not traps).
    pub fn is_trap(&self) -> bool {
        !matches!(self, CallError::Returned { .. } | CallError::Quota { .. })
    }
}

enum Bound {
    Aggregator(Aggregator),
    Router(Router),
    Channel(Channel),
}

struct Live {
    store: Store<HostCtx>,
    bound: Bound,
    configured_generation: u64,
    /// Linear memory once configured: an instance that never grew past it
    /// is not recycled, however close to its cap it starts.
    memory_fresh: usize,
}

/// A worker's instances, keyed by plugin content hash.
pub struct Instances {
    rt: Runtime,
    live: HashMap<String, Live>,
    recycled: u64,
    memory_peak: usize,
}

impl Instances {
    /// An empty set of instances for one worker.
    pub fn new(rt: Runtime) -> Self {
        Self {
            rt,
            live: HashMap::new(),
            recycled: 0,
            memory_peak: 0,
        }
    }

    /// Drops instances of plugin versions for which `keep` says false
    /// (versions no longer loaded after a swap).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.live.retain(|hash, _| keep(hash));
    }

    /// The log lines every live instance kept since the last call of this
    /// (with [`crate::plugin::HostSettings::capture_logs`]), as (level,
    /// message).
    pub fn take_logs(&mut self) -> Vec<(String, String)> {
        self.live
            .values_mut()
            .filter_map(|l| l.store.data_mut().logs.as_mut().map(std::mem::take))
            .flatten()
            .collect()
    }

    /// The runtime these instances run on.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Linear memory the live instances hold, in bytes (what the benchmark
    /// reports per instance).
    pub fn memory_in_use(&self) -> usize {
        self.live.values().map(|l| l.store.data().memory_now).sum()
    }

    /// The most linear memory one instance held after a call, in bytes.
    pub fn memory_peak(&self) -> usize {
        self.memory_peak
    }

    /// Instances retired at their recycle mark since these were made.
    pub fn recycled(&self) -> u64 {
        self.recycled
    }

    /// Number of live instances.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no instance is alive.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    async fn instantiate(rt: &Runtime, plugin: &LoadedPlugin) -> Result<Live, CallError> {
        let mut store = Store::new(rt.engine(), rt.new_ctx(&plugin.name));
        store.limiter(|c| c);
        // Every epoch tick the running guest yields to tokio (a runaway
        // plugin never stalls other tasks) and its budget is checked.
        store.epoch_deadline_callback(|mut ctx| {
            let data = ctx.data_mut();
            if data.charge_and_check() {
                data.hit = Some(LimitHit::Deadline);
                return Err(wasmtime::Error::msg("CPU deadline exceeded"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.data_mut().start_call();
        store.set_epoch_deadline(1);
        let bound = match &plugin.pre {
            PluginPre::Aggregator(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bound::Aggregator),
            PluginPre::Router(pre) => pre.instantiate_async(&mut store).await.map(Bound::Router),
            PluginPre::Channel(pre) => pre.instantiate_async(&mut store).await.map(Bound::Channel),
        };
        match bound {
            Ok(bound) => Ok(Live {
                store,
                bound,
                configured_generation: u64::MAX,
                memory_fresh: 0,
            }),
            Err(e) => Err(classify(&plugin.name, "instantiate", rt, &mut store, e)),
        }
    }

    /// The live instance of `u.plugin`, created and configured as needed.
    async fn live(&mut self, u: PluginUse<'_>) -> Result<&mut Live, CallError> {
        let hash = &u.plugin.hash;
        if !self.live.contains_key(hash) {
            let live = Self::instantiate(&self.rt, u.plugin).await?;
            self.live.insert(hash.clone(), live);
        }
        let needs_config = self
            .live
            .get(hash)
            .is_some_and(|l| l.configured_generation != u.generation);
        if needs_config {
            for b in u.bindings {
                let result = self.configure_live(u, b).await;
                if let Err(e) = result {
                    // Validated at load time, so this is unexpected; the
                    // binding's calls will report "not configured".
                    tracing::error!(plugin = %u.plugin.name, binding = %b.id, error = %e, "configure failed on a fresh instance");
                    if e.is_trap() {
                        return Err(e);
                    }
                }
            }
            if let Some(l) = self.live.get_mut(hash) {
                l.configured_generation = u.generation;
                l.memory_fresh = l.store.data().memory_now;
            }
        }
        self.live
            .get_mut(hash)
            .ok_or_else(|| CallError::Instantiate {
                plugin: u.plugin.name.clone(),
                detail: "instance vanished".into(),
            })
    }

    async fn configure_live(
        &mut self,
        u: PluginUse<'_>,
        b: &BindingConfig,
    ) -> Result<(), CallError> {
        let hash = u.plugin.hash.clone();
        let Some(live) = self.live.get_mut(&hash) else {
            return Ok(());
        };
        begin(&mut live.store, b.rule.clone(), Arc::default());
        let result = match &live.bound {
            Bound::Aggregator(p) => {
                p.call_configure(&mut live.store, &b.id, &b.config_json)
                    .await
            }
            Bound::Router(p) => {
                p.call_configure(&mut live.store, &b.id, &b.config_json)
                    .await
            }
            Bound::Channel(p) => {
                p.call_configure(&mut live.store, &b.id, &b.config_json)
                    .await
            }
        };
        self.finish(&hash, &u.plugin.name, "configure", result)
            .map(|_| ())
    }

    /// Maps a call's outcome; drops the instance if it trapped.
    fn finish<R>(
        &mut self,
        hash: &str,
        plugin: &str,
        call: &'static str,
        result: wasmtime::Result<Result<R, String>>,
    ) -> Result<R, CallError> {
        let exceeded = self
            .live
            .get_mut(hash)
            .and_then(|l| l.store.data_mut().usage.exceeded.take());
        match result {
            Ok(returned) => {
                self.recycle_if_grown(hash, plugin, call);
                if let Some(detail) = exceeded {
                    // The guest carried on past a refusal: the call fails.
                    return Err(CallError::Quota {
                        plugin: plugin.to_string(),
                        call,
                        detail,
                    });
                }
                returned.map_err(|message| CallError::Returned {
                    plugin: plugin.to_string(),
                    call,
                    message: super::quota::cut(&message, self.rt.limits().quotas.error_bytes),
                })
            }
            Err(e) => {
                let err = match self.live.remove(hash) {
                    Some(mut live) => {
                        live.store.data_mut().usage.exceeded = exceeded;
                        classify(plugin, call, &self.rt, &mut live.store, e)
                    }
                    None => CallError::Trap {
                        plugin: plugin.to_string(),
                        call,
                        detail: format!("{e:#}"),
                    },
                };
                Err(err)
            }
        }
    }

    /// Retires the instance of `hash` after a call if its memory grew past
    /// the recycle mark; the next call makes and configures a fresh one.
    /// Never during `configure`: the instance is still being set up.
    fn recycle_if_grown(&mut self, hash: &str, plugin: &str, call: &'static str) {
        let Some(live) = self.live.get(hash).filter(|_| call != "configure") else {
            return;
        };
        let now = live.store.data().memory_now;
        self.memory_peak = self.memory_peak.max(now);
        if now >= self.rt.limits().recycle_mark_of(plugin) && now > live.memory_fresh {
            tracing::debug!(
                plugin,
                memory = now,
                fresh = live.memory_fresh,
                "instance recycled at its memory mark"
            );
            metrics::counter!("tocsin_plugin_instances_recycled_total", "plugin" => plugin.to_string())
                .increment(1);
            self.recycled += 1;
            self.live.remove(hash);
        }
    }

    /// Calls an aggregator's `aggregate` for `binding`.
    pub async fn aggregate(
        &mut self,
        u: PluginUse<'_>,
        binding: &str,
        rule: Arc<str>,
        events: &[ErrorEvent],
        view: crate::state::StateView,
    ) -> Result<Vec<Alert>, CallError> {
        let live = self.live(u).await?;
        begin(&mut live.store, rule, Arc::default());
        live.store.data_mut().scope.view = Some(view);
        let result = match &live.bound {
            Bound::Aggregator(p) => p.call_aggregate(&mut live.store, binding, events).await,
            _ => Ok(Err(format!("`{}` is not an aggregator", u.plugin.name))),
        };
        // The instance outlives the batch; its transaction must not.
        live.store.data_mut().scope.view = None;
        let alerts = self.finish(&u.plugin.hash, &u.plugin.name, "aggregate", result)?;
        match self.rt.limits().quotas.check_alerts(&alerts) {
            Ok(()) => Ok(alerts),
            Err(detail) => Err(CallError::Quota {
                plugin: u.plugin.name.clone(),
                call: "aggregate",
                detail,
            }),
        }
    }

    /// Calls a router's `route` for `binding`.
    pub async fn route(
        &mut self,
        u: PluginUse<'_>,
        binding: &str,
        rule: Arc<str>,
        alert: &Alert,
        channels: &[String],
    ) -> Result<Vec<String>, CallError> {
        let live = self.live(u).await?;
        begin(&mut live.store, rule, Arc::default());
        let result = match &live.bound {
            Bound::Router(p) => {
                p.call_route(&mut live.store, binding, alert, channels)
                    .await
            }
            _ => Ok(Err(format!("`{}` is not a router", u.plugin.name))),
        };
        self.finish(&u.plugin.hash, &u.plugin.name, "route", result)
    }

    /// Calls a channel's `deliver` for `binding` with the rule's `grants`;
    /// returns the deliveries it queued.
    pub async fn deliver(
        &mut self,
        u: PluginUse<'_>,
        binding: &str,
        rule: Arc<str>,
        grants: Arc<Grants>,
        alert: &Alert,
    ) -> Result<Vec<Delivery>, CallError> {
        let live = self.live(u).await?;
        begin(&mut live.store, rule, grants);
        let result = match &live.bound {
            Bound::Channel(p) => p.call_deliver(&mut live.store, binding, alert).await,
            _ => Ok(Err(format!("`{}` is not a channel", u.plugin.name))),
        };
        let deliveries = std::mem::take(&mut live.store.data_mut().scope.deliveries);
        self.finish(&u.plugin.hash, &u.plugin.name, "deliver", result)
            .map(|()| deliveries)
    }

    /// Validates a binding's configuration on a scratch instance: what a
    /// reload does before swapping a rule in.
    pub async fn check_configure(
        rt: &Runtime,
        plugin: &Arc<LoadedPlugin>,
        binding: &BindingConfig,
    ) -> Result<(), CallError> {
        let mut scratch = Instances::new(rt.clone());
        let live = Self::instantiate(rt, plugin).await?;
        scratch.live.insert(plugin.hash.clone(), live);
        let u = PluginUse {
            plugin,
            bindings: &[],
            generation: u64::MAX,
        };
        scratch.configure_live(u, binding).await
    }
}

/// Resets the sandbox budget and the call scope before a call.
fn begin(store: &mut Store<HostCtx>, rule: Arc<str>, grants: Arc<Grants>) {
    let data = store.data_mut();
    data.start_call();
    data.scope = CallScope::new(rule, grants);
    store.set_epoch_deadline(1);
}

/// What went wrong in `call` of `plugin`: the limit it hit, or the trap's
/// root cause in one line (the wasm backtrace goes to the debug log).
fn classify(
    plugin: &str,
    call: &'static str,
    rt: &Runtime,
    store: &mut Store<HostCtx>,
    e: wasmtime::Error,
) -> CallError {
    let plugin = plugin.to_string();
    let hit = store.data().hit;
    if let Some(detail) = store.data_mut().usage.exceeded.take() {
        return CallError::Quota {
            plugin,
            call,
            detail,
        };
    }
    let output = store.data_mut().take_output();
    // One line: logs, metrics labels and AMQP headers stay readable.
    let one_line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    // The reason, not the wasm backtrace (it goes to the debug log).
    tracing::debug!(plugin = %plugin, call, error = %format!("{e:?}"), "plugin call failed");
    let reason = one_line(&e.root_cause().to_string());
    let detail = if output.is_empty() {
        reason
    } else {
        format!("{reason}; guest said: {}", one_line(&output))
    };
    match hit {
        Some(LimitHit::Deadline) => CallError::Deadline {
            ms: rt.limits().call_timeout_of(&plugin).as_millis(),
            plugin,
            call,
        },
        Some(LimitHit::Memory) => CallError::Memory {
            plugin,
            call,
            detail,
        },
        Some(LimitHit::Quota) | None => CallError::Trap {
            plugin,
            call,
            detail,
        },
    }
}
