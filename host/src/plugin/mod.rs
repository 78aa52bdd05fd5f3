//! The plugin runtime: one wasmtime engine, a content-addressed compile
//! cache, the sandbox every call runs in, and per-worker instances.
//!
//! Why this shape: compiling a component costs ~100 ms but loading a cached
//! artifact ~2 ms, so artifacts are keyed by content hash and reused across
//! restarts and reloads. Instances are cheap to make from an `InstancePre`
//! and are thrown away after any trap, so a misbehaving plugin can never
//! leave a half-updated instance behind.

pub mod bindings;
pub mod capability;
pub mod inspect;
pub mod instance;
pub mod loader;
pub mod quota;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::state::StateStore;
pub use capability::{CallScope, Grants};
pub use instance::{CallError, Instances};
pub use loader::{LoadError, LoadedPlugin, World};
pub use quota::Quotas;

/// Sandbox limits applied to every plugin call and instance.
#[derive(Clone, Debug)]
pub struct SandboxLimits {
    /// Wall-clock budget of one call, enforced by epoch interruption.
    pub call_timeout: Duration,
    /// Cap on one instance's linear memory, in bytes.
    pub memory_bytes: usize,
    /// Instances alive at once, all plugins and workers together: the
    /// size of the pooling allocator (it reserves address space per slot).
    pub instances: u32,
    /// Per-plugin limits by plugin name, instead of the two above.
    pub plugins: HashMap<String, PluginLimits>,
    /// What a plugin may make the host hold ([`quota`]).
    pub quotas: Arc<Quotas>,
}

/// One plugin's own limits; `None` keeps the default.
#[derive(Clone, Debug, Default)]
pub struct PluginLimits {
    pub call_timeout: Option<Duration>,
    pub memory_bytes: Option<usize>,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(200),
            memory_bytes: 64 << 20,
            instances: 256,
            plugins: HashMap::new(),
            quotas: Arc::default(),
        }
    }
}

impl SandboxLimits {
    /// The limits `[sandbox]` configures.
    pub fn from_config(c: &crate::config::SandboxConfig) -> Self {
        let plugins = c
            .plugins
            .iter()
            .map(|(name, p)| {
                let limits = PluginLimits {
                    call_timeout: p.call_timeout_ms.map(|ms| Duration::from_millis(ms.max(1))),
                    memory_bytes: p.memory_mb.map(|mb| mb.max(1) << 20),
                };
                (name.clone(), limits)
            })
            .collect();
        Self {
            call_timeout: Duration::from_millis(c.call_timeout_ms.max(1)),
            memory_bytes: c.memory_mb.max(1) << 20,
            instances: c.instances.max(1),
            plugins,
            quotas: Arc::new(c.quotas.clone()),
        }
    }

    /// The CPU deadline of one call of `plugin`.
    pub fn call_timeout_of(&self, plugin: &str) -> Duration {
        self.plugins
            .get(plugin)
            .and_then(|p| p.call_timeout)
            .unwrap_or(self.call_timeout)
    }

    /// The linear-memory cap of one instance of `plugin`.
    pub fn memory_of(&self, plugin: &str) -> usize {
        self.plugins
            .get(plugin)
            .and_then(|p| p.memory_bytes)
            .unwrap_or(self.memory_bytes)
    }

    /// The linear memory past which an instance of `plugin` is retired
    /// after a successful call (three quarters of its cap): a runtime that
    /// never gives memory back (ComponentizeJS grows ~1 KB per event) is
    /// replaced by a fresh instance before it traps, instead of after.
    pub fn recycle_mark_of(&self, plugin: &str) -> usize {
        self.memory_of(plugin) / 4 * 3
    }

    /// The largest cap of any plugin: the pool's slot size (each store's
    /// limiter enforces its own plugin's cap below it).
    fn largest_memory(&self) -> usize {
        self.plugins
            .values()
            .filter_map(|p| p.memory_bytes)
            .fold(self.memory_bytes, usize::max)
    }
}

/// Host settings plugins can observe through capabilities.
#[derive(Clone, Debug, Default)]
pub struct HostSettings {
    /// `[smtp] to`: recipients of rules that grant `default`.
    pub default_email_to: Vec<String>,
    /// Whether an SMTP server is configured; without one, email is refused
    /// at the capability rather than queued to fail later.
    pub email_enabled: bool,
    /// Keep plugin log lines for the caller ([`Instances::take_logs`])
    /// besides logging them: `tocsin plugin test` prints them.
    pub capture_logs: bool,
}

/// How often the engine's epoch advances; the deadline granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The shared plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    limits: SandboxLimits,
    state: StateStore,
    host: Arc<HostSettings>,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Release);
    }
}

/// Errors building the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("configuring wasmtime: {0}")]
    Engine(String),
}

impl Runtime {
    /// Builds the engine (component model, epoch interruption, pooling
    /// allocator) and starts the epoch ticker thread.
    pub fn new(
        limits: SandboxLimits,
        state: StateStore,
        host: HostSettings,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.concurrency_support(false);
        config.max_wasm_stack(512 * 1024);
        // `TOCSIN_WASM_PROFILE=perfmap` names plugin functions in `perf`
        // (writes /tmp/perf-<pid>.map): how plugin authors profile.
        if std::env::var("TOCSIN_WASM_PROFILE").as_deref() == Ok("perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let mut pool = PoolingAllocationConfig::default();
        let slots = limits.instances;
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(4))
            .total_memories(slots)
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .max_memory_size(limits.largest_memory());
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("tocsin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError::Engine(format!("epoch thread: {e}")))?;
        }
        if let Some(dir) = &cache_dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "compile cache disabled");
            }
        }
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                cache_dir,
                limits,
                state,
                host: Arc::new(host),
                stop_ticker,
            }),
        })
    }

    /// The wasmtime engine shared by every plugin.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The sandbox limits in force.
    pub fn limits(&self) -> &SandboxLimits {
        &self.inner.limits
    }

    /// The state backend plugins reach through `state`.
    pub fn state(&self) -> &StateStore {
        &self.inner.state
    }

    /// Creates the store data for a new instance of `plugin`.
    fn new_ctx(&self, plugin: &str) -> HostCtx {
        let stderr = MemoryOutputPipe::new(4096);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .stdout(stderr.clone())
            .build();
        HostCtx {
            plugin: Arc::from(plugin),
            wasi,
            table: ResourceTable::new(),
            stderr,
            state: self.inner.state.clone(),
            host: self.inner.host.clone(),
            scope: CallScope::default(),
            memory_cap: self.inner.limits.memory_of(plugin),
            memory_now: 0,
            charged: Duration::ZERO,
            last_check: std::time::Instant::now(),
            call_budget: self.inner.limits.call_timeout_of(plugin),
            host_wait: Duration::ZERO,
            hit: None,
            logs: self.inner.host.capture_logs.then(Vec::new),
            quotas: self.inner.limits.quotas.clone(),
            usage: quota::CallUsage::default(),
            log_bucket: quota::LogBucket::new(self.inner.limits.quotas.log_lines_per_second),
        }
    }
}

/// Which sandbox limit stopped a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    Deadline,
    Memory,
    /// A host-side quota ([`quota`]); the reason is in [`CallUsage::exceeded`](quota::CallUsage).
    Quota,
}

/// Store data of one plugin instance.
pub struct HostCtx {
    /// Plugin name, for logs and metrics.
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    /// Captures what the guest writes to stderr/stdout (panic messages).
    stderr: MemoryOutputPipe,
    state: StateStore,
    host: Arc<HostSettings>,
    /// The call in progress.
    pub scope: CallScope,
    memory_cap: usize,
    /// Linear memory the instance holds, all its memories together.
    pub(crate) memory_now: usize,
    /// Guest time charged to the current call, and its budget.
    charged: Duration,
    call_budget: Duration,
    /// The previous deadline check (or the call's start).
    last_check: std::time::Instant,
    /// Time spent waiting in async host calls (Redis) since the last
    /// check: not the plugin's CPU, so not charged.
    pub(crate) host_wait: Duration,
    /// Set when a sandbox limit stopped the call.
    hit: Option<LimitHit>,
    /// Log lines kept for the caller (level, message), when asked for.
    pub(crate) logs: Option<Vec<(String, String)>>,
    /// The host-side caps, what this call used of them, and the
    /// instance's log rate.
    pub(crate) quotas: Arc<Quotas>,
    pub(crate) usage: quota::CallUsage,
    pub(crate) log_bucket: quota::LogBucket,
}

impl HostCtx {
    /// Starts the budget of a new call.
    pub(crate) fn start_call(&mut self) {
        self.charged = Duration::ZERO;
        self.last_check = std::time::Instant::now();
        self.host_wait = Duration::ZERO;
        self.hit = None;
        self.usage = quota::CallUsage::default();
    }

    /// Records that the call went over a quota: it fails with `why` (the
    /// first one), whatever the guest does next. Returns the trap a host
    /// function without an error result raises.
    pub(crate) fn over_quota(&mut self, why: String) -> wasmtime::Error {
        let e = wasmtime::Error::msg(why.clone());
        self.hit = Some(LimitHit::Quota);
        self.usage.exceeded.get_or_insert(why);
        e
    }

    /// Charges the guest for the time since the last check and says
    /// whether its budget is spent. Called at every epoch tick while the
    /// guest runs. What is charged approximates the guest's CPU: host waits
    /// are subtracted, and no span counts more than two ticks, so time the
    /// task spent parked after a yield (a loaded machine) is not charged.
    pub(crate) fn charge_and_check(&mut self) -> bool {
        let now = std::time::Instant::now();
        let span = now
            .duration_since(self.last_check)
            .saturating_sub(self.host_wait);
        self.charged += span.min(EPOCH_TICK * 2);
        self.last_check = now;
        self.host_wait = Duration::ZERO;
        self.charged > self.call_budget
    }

    /// What the guest printed (its panic message, usually), lossily decoded.
    pub fn take_output(&mut self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }
}

impl WasiView for HostCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for HostCtx {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.hit = Some(LimitHit::Memory);
            return Err(wasmtime::Error::msg(format!(
                "memory cap exceeded: plugin asked to grow linear memory from {current} to {desired} bytes, cap is {}",
                self.memory_cap
            )));
        }
        self.memory_now = self
            .memory_now
            .saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
