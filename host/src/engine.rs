//! Wiring: builds every part from a [`Config`] and starts them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::catalog::{watcher, Catalog, Generation, ReloadReport};
use crate::config::Config;
use crate::deliver::breaker::BreakerConfig;
use crate::deliver::email::SmtpSender;
use crate::deliver::{Deliverer, Dispatcher, Outbox, WsHub};
use crate::pipeline::{self, PipelineConfig, PipelineHandle};
use crate::plugin::{HostSettings, Runtime, SandboxLimits};
use crate::silence::Silences;
use crate::state::StateStore;
use crate::trace::Traces;

/// A running engine: everything the API needs.
#[derive(Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    pub catalog: Arc<Mutex<Catalog>>,
    pub generation: Arc<ArcSwap<Generation>>,
    pub pipeline: PipelineHandle,
    pub hub: WsHub,
    pub deliverer: Deliverer,
    /// Per-event traces.
    pub traces: Traces,
    /// The RabbitMQ consumer's state, when `[amqp] url` is set.
    pub amqp: Option<Arc<crate::source::amqp::AmqpStatus>>,
    /// Its dead letters (`tocsin dlq`), when `[amqp] url` is set.
    pub dead_letters: Option<Arc<crate::source::amqp::dlq::DeadLetters>>,
    pub state: StateStore,
    pub runtime: Runtime,
    /// Silences, read by the pipeline, changed through the API.
    pub silences: Silences,
    /// The dashboard's counters ([`crate::stats`]).
    pub stats: crate::stats::Stats,
    _watcher: Arc<Option<notify::RecommendedWatcher>>,
}

/// Creates the data directory and opens the configured state (embedded,
/// or Redis when `[redis] url` is set): what a running engine counts in.
pub async fn open_state(config: &Config) -> anyhow::Result<StateStore> {
    let data = &config.engine.data;
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    Ok(if config.redis.url.trim().is_empty() {
        StateStore::open_embedded(&data.join("state")).context("opening state")?
    } else {
        let redis = crate::state::RedisState::connect(
            &config.redis.url,
            &config.redis.prefix,
            config.redis.patience(),
            &data.join("state-local"),
        )
        .await
        .context("opening Redis state")?;
        StateStore::Redis(redis)
    })
}

/// The compile cache: `[engine] cache`, else `<data>/cache`.
pub fn compile_cache(config: &Config) -> std::path::PathBuf {
    config
        .engine
        .cache
        .clone()
        .unwrap_or_else(|| config.engine.data.join("cache"))
}

/// Builds the runtime over `state`, with compiled plugins cached in
/// `cache`, and the catalog, and runs a first load, without starting
/// workers or the watcher. `tocsin check` passes a scratch state (it must
/// not touch a running engine's) and a cache it may use.
/// With `background`, large uncached plugins compile off the start-up path
/// (a running engine serves at once; `tocsin check` passes false to wait).
pub async fn load_catalog(
    config: &Config,
    state: StateStore,
    cache: Option<std::path::PathBuf>,
    background: bool,
) -> anyhow::Result<(Runtime, Catalog, ReloadReport)> {
    crate::telemetry::install();
    let limits = SandboxLimits::from_config(&config.sandbox);
    let host = HostSettings {
        default_email_to: config.smtp.to.clone(),
        email_enabled: !config.smtp.host.trim().is_empty(),
        capture_logs: false,
    };
    let runtime = Runtime::new(limits, state, host, cache).context("starting plugin runtime")?;
    for (what, dir) in [
        ("plugins", &config.engine.plugins),
        ("rules", &config.engine.rules),
    ] {
        if !dir.is_dir() {
            anyhow::bail!(
                "{what} directory {} does not exist (set --{what} or TOCSIN_ENGINE_{})",
                dir.display(),
                what.to_uppercase()
            );
        }
    }
    // `[delivery] attempts/base_ms/cap_ms`: the retry policy of every
    // channel whose rule sets none.
    let mut catalog = Catalog::new(
        runtime.clone(),
        config.engine.plugins.clone(),
        config.engine.rules.clone(),
    )
    .with_default_retry(crate::deliver::RetryPolicy::from(&config.delivery))
    .with_background_compiles(background);
    if background {
        // A running engine (not `tocsin check`) drops removed rules' state.
        catalog = catalog.with_purge_after(std::time::Duration::from_secs(
            config.engine.purge_removed_after_secs,
        ));
    }
    let report = catalog.reload().await;
    Ok((runtime, catalog, report))
}

impl Engine {
    /// Loads plugins and rules, starts the workers and the watcher.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let state = open_state(&config).await?;
        let cache = compile_cache(&config);
        let (runtime, catalog, report) = load_catalog(&config, state, Some(cache), true).await?;
        tracing::info!(
            generation = report.generation,
            errors = report.errors.len(),
            "initial load done"
        );
        let generation = catalog.generation();
        let catalog = Arc::new(Mutex::new(catalog));
        let watcher =
            watcher::spawn(catalog.clone()).context("watching plugin and rule directories")?;
        let hub = if config.redis.url.trim().is_empty() {
            WsHub::new()
        } else {
            WsHub::clustered(
                &config.redis.url,
                &config.redis.prefix,
                config.redis.patience(),
            )
            .await
            .map_err(anyhow::Error::msg)?
        };
        let outbox =
            Outbox::open(&config.engine.data.join("outbox.db")).context("opening the outbox")?;
        let smtp = SmtpSender::new(&config.smtp).map_err(anyhow::Error::msg)?;
        let dispatcher = Dispatcher::start(
            outbox.clone(),
            smtp,
            BreakerConfig::default(),
            config.delivery.concurrency,
        );
        replay_intents(runtime.state(), &outbox).await?;
        let deliverer = Deliverer::new(hub.clone(), outbox.clone(), dispatcher.clone());
        if let StateStore::Redis(redis) = runtime.state() {
            crate::cluster::Cluster::start(redis.clone(), &deliverer, config.redis.heartbeat_ttl())
                .await
                .context("joining the cluster in Redis")?;
        }
        dispatcher
            .resume()
            .await
            .context("resuming pending deliveries")?;
        spawn_cleanup(outbox, config.delivery.retention_hours);
        let deliverer_handle = deliverer.clone();
        let traces = if config.redis.url.trim().is_empty() {
            Traces::memory(config.engine.traces)
        } else {
            Traces::redis(
                &config.redis.url,
                &config.redis.prefix,
                config.redis.patience(),
            )
            .await
            .map_err(anyhow::Error::msg)?
        };
        let silences = Silences::open(&config.engine.data, runtime.state())
            .await
            .context("opening the silences")?;
        let stats = crate::stats::Stats::new(runtime.state().clone(), config.engine.stats);
        stats.start(std::time::Duration::from_millis(
            config.engine.stats_flush_ms,
        ));
        let pipeline = pipeline::start(
            PipelineConfig {
                stats: stats.clone(),
                workers: config.engine.workers,
                queue: config.engine.queue,
                dedup_ttl_ms: config.engine.dedup_ttl_secs.saturating_mul(1000),
                silences: silences.clone(),
                escalation_tick: std::time::Duration::from_millis(
                    config.engine.escalation_tick_ms.max(10),
                ),
            },
            generation.clone(),
            runtime.clone(),
            deliverer,
            traces.clone(),
        );
        let amqp = if config.amqp.url.trim().is_empty() {
            None
        } else {
            Some(crate::source::amqp::spawn(
                config.amqp.clone(),
                pipeline.clone(),
            ))
        };
        let dead_letters = amqp.as_ref().map(|status| {
            let dead = crate::source::amqp::dlq::DeadLetters::new(config.amqp.clone());
            if config.amqp.recovery {
                crate::source::amqp::recovery::spawn(
                    dead.clone(),
                    (&config.amqp).into(),
                    generation.clone(),
                    status.clone(),
                    pipeline.clone(),
                );
            }
            dead
        });
        crate::watch::start(
            crate::watch::probes::Probes::new(
                config.watch.clone(),
                pipeline.clone(),
                deliverer_handle.clone(),
                runtime.state().clone(),
                catalog.clone(),
                amqp.as_ref()
                    .map(|a| (a.backlog.clone(), config.amqp.queue.clone())),
            ),
            pipeline.clone(),
        );
        Ok(Self {
            stats,
            traces,
            amqp,
            dead_letters,
            deliverer: deliverer_handle,
            config: Arc::new(config),
            catalog,
            generation,
            pipeline,
            hub,
            state: runtime.state().clone(),
            runtime,
            silences,
            _watcher: Arc::new(Some(watcher)),
        })
    }
}

/// Hourly: forget notification history and finished deliveries older than
/// the retention.
fn spawn_cleanup(outbox: Outbox, retention_hours: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let keep_ms =
                i64::try_from(retention_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
            outbox.cleanup(crate::event::now_ms().saturating_sub(keep_ms));
        }
    });
}

/// Records notifications a previous run made durable as intents but may
/// have crashed before committing to the outbox (see [`crate::pipeline`]).
async fn replay_intents(state: &StateStore, outbox: &Outbox) -> anyhow::Result<()> {
    let intents = state.intents().await;
    for (key, text) in &intents {
        let out: crate::deliver::Outgoing = match serde_json::from_str(text) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(key = %key.escape_debug(), error = %e, "unreadable outbox intent dropped");
                state.drop_intent(key).await;
                continue;
            }
        };
        outbox
            .enqueue(out.notifications, out.deliveries)
            .await
            .context("replaying an outbox intent")?;
        state.drop_intent(key).await;
    }
    if !intents.is_empty() {
        tracing::info!(
            intents = intents.len(),
            "replayed outbox intents left by the previous run"
        );
        state.sync().await.context("syncing state")?;
    }
    Ok(())
}
