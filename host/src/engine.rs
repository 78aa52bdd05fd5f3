//! Wiring: builds every part from a [`Config`] and starts them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::catalog::{watcher, Catalog, Generation, ReloadReport};
use crate::config::Config;
use crate::deliver::{Deliverer, WsHub};
use crate::pipeline::{self, PipelineHandle};
use crate::plugin::{HostSettings, Runtime, SandboxLimits};
use crate::state::StateStore;

/// A running engine: everything the API needs.
#[derive(Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    pub catalog: Arc<Mutex<Catalog>>,
    pub generation: Arc<ArcSwap<Generation>>,
    pub pipeline: PipelineHandle,
    pub hub: WsHub,
    pub state: StateStore,
    pub runtime: Runtime,
    _watcher: Arc<Option<notify::RecommendedWatcher>>,
}

/// Builds the runtime and catalog and runs a first load, without starting
/// workers or the watcher: what `tocsin check` needs.
pub async fn load_catalog(config: &Config) -> anyhow::Result<(Runtime, Catalog, ReloadReport)> {
    crate::api::metrics::install();
    let data = &config.engine.data;
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let state = StateStore::open_embedded(&data.join("state")).context("opening state")?;
    let limits = SandboxLimits {
        call_timeout: Duration::from_millis(config.sandbox.call_timeout_ms.max(1)),
        memory_bytes: config.sandbox.memory_mb.max(1) << 20,
    };
    let host = HostSettings {
        default_email_to: config.smtp.to.clone(),
    };
    let runtime = Runtime::new(
        limits,
        state,
        host,
        Some(
            config
                .engine
                .cache
                .clone()
                .unwrap_or_else(|| data.join("cache")),
        ),
    )
    .context("starting plugin runtime")?;
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
    let mut catalog = Catalog::new(
        runtime.clone(),
        config.engine.plugins.clone(),
        config.engine.rules.clone(),
    );
    let report = catalog.reload().await;
    Ok((runtime, catalog, report))
}

impl Engine {
    /// Loads plugins and rules, starts the workers and the watcher.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let (runtime, catalog, report) = load_catalog(&config).await?;
        tracing::info!(
            generation = report.generation,
            errors = report.errors.len(),
            "initial load done"
        );
        let generation = catalog.generation();
        let catalog = Arc::new(Mutex::new(catalog));
        let watcher =
            watcher::spawn(catalog.clone()).context("watching plugin and rule directories")?;
        let hub = WsHub::new();
        let deliverer = Deliverer::new(hub.clone());
        let pipeline = pipeline::start(
            config.engine.workers,
            config.engine.queue,
            generation.clone(),
            runtime.clone(),
            deliverer,
        );
        Ok(Self {
            config: Arc::new(config),
            catalog,
            generation,
            pipeline,
            hub,
            state: runtime.state().clone(),
            runtime,
            _watcher: Arc::new(Some(watcher)),
        })
    }

    /// Serves the HTTP API on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr: SocketAddr = listener.local_addr()?;
        tracing::info!(%addr, "tocsin listening");
        axum::serve(listener, crate::api::router(self))
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server")
    }
}
