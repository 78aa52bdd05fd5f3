//! The `tocsin` command: `run`, `check`, `send`, `dlq`, `silence`, `plugin`.

mod client;
mod dlq;
mod plugin;
mod send;
mod silence;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// tocsin — error alerting with sandboxed WebAssembly rules.
#[derive(Parser, Debug)]
#[command(name = "tocsin", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the engine (embedded state, no external services needed).
    #[command(after_help = Config::env_help())]
    Run(Paths),
    /// Validate configuration, rules and plugins; exit non-zero on any error.
    Check(Paths),
    /// Post test events to a running engine.
    Send(send::SendArgs),
    /// Inspect and replay dead-lettered deliveries of a running engine.
    Dlq(dlq::DlqArgs),
    /// Mute alerts for a while, list and expire silences of a running
    /// engine (its Alertmanager-compatible API, as `amtool silence` uses).
    Silence(silence::SilenceArgs),
    /// Write, build, check and test plugins (no engine needed).
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Where things are; each overrides the config file and environment.
#[derive(Args, Debug, Clone)]
pub struct Paths {
    /// Configuration file (TOML).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<String>,
    /// Rules directory.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Plugins directory (built .wasm components).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Data directory (state, compile cache).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `run`: listen on an address other machines can reach even without
    /// an ingest token and an admin token.
    #[arg(long)]
    pub insecure: bool,
}

impl Paths {
    /// Loads the configuration with these overrides applied last.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(v) = &self.listen {
            c.http.listen = v.clone();
        }
        if let Some(v) = &self.rules {
            c.engine.rules = v.clone();
        }
        if let Some(v) = &self.plugins {
            c.engine.plugins = v.clone();
        }
        if let Some(v) = &self.data {
            c.engine.data = v.clone();
        }
        Ok(c)
    }
}

/// Runs the parsed command; returns the process exit code.
pub async fn main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(paths) => {
            let config = paths.config()?;
            if let Some(problem) = crate::api::admin::exposure(&config) {
                if !paths.insecure {
                    anyhow::bail!(problem);
                }
                tracing::warn!("--insecure: {problem}");
            }
            run(config).await.map(|()| 0)
        }
        Command::Check(paths) => check(paths.config()?).await,
        Command::Send(args) => send::run(args).await.map(|()| 0),
        Command::Dlq(args) => dlq::run(args).await.map(|()| 0),
        Command::Silence(args) => silence::run(args).await.map(|()| 0),
        Command::Plugin(command) => plugin::run(command).await,
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.http.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let engine = crate::Engine::start(config).await?;
    // See `crate::shutdown`: the server stops once the intake is drained,
    // and at the latest at the deadline.
    let (deadline_tx, deadline_rx) = tokio::sync::watch::channel(None);
    let drained = {
        let engine = engine.clone();
        async move {
            crate::shutdown::signalled().await;
            let deadline = crate::shutdown::deadline(&engine);
            deadline_tx.send_replace(Some(deadline));
            crate::shutdown::drain_intake(&engine, deadline).await;
        }
    };
    let server = crate::api::serve(engine.clone(), listener, drained);
    let cut_off = async {
        let mut rx = deadline_rx.clone();
        let deadline = rx.wait_for(Option::is_some).await.ok().and_then(|d| *d);
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served?,
        () = cut_off => tracing::warn!("shutdown deadline: closing HTTP connections still open"),
    }
    let deadline = (*deadline_rx.borrow()).unwrap_or_else(|| crate::shutdown::deadline(&engine));
    crate::shutdown::finish(&engine, deadline).await
}

/// `tocsin check`: loads every plugin and rule as a starting engine would,
/// over a scratch state (never the engine's: it may be running), with the
/// configured compile cache when the data directory exists (so a check
/// warms the engine's cache), else the user's cache — it never creates a
/// data directory.
async fn check(config: Config) -> anyhow::Result<i32> {
    let scratch = plugin::Scratch::new()?;
    let state = crate::state::StateStore::open_embedded(&scratch.path().join("state"))
        .context("opening a scratch state")?;
    let cache = if config.engine.cache.is_some() || config.engine.data.is_dir() {
        Some(crate::engine::compile_cache(&config))
    } else {
        plugin::cache_dir()
    };
    let (rt, catalog, _) = crate::engine::load_catalog(&config, state, cache, false).await?;
    let generation = catalog.generation().load_full();
    for p in catalog.plugin_status() {
        if let (Some(w), None) = (&p.world, &p.last_error) {
            let hash = p.hash.as_deref().map(|h| &h[..12]).unwrap_or("");
            println!("ok    plugin {:<18} {w:<10} {hash}", p.name);
            // What `tocsin plugin check` says about its imports, too.
            let Some(loaded) = generation.plugins.get(&p.name) else {
                continue;
            };
            for import in crate::plugin::inspect::imports_of(&rt, &loaded.component) {
                if let crate::plugin::inspect::ImportStatus::Stubbed(note) = import.status {
                    println!("note  plugin {:<18} {note}", p.name);
                }
            }
        }
    }
    for r in catalog.rule_status() {
        if r.last_error.is_none() {
            println!(
                "ok    rule   {:<28} {} → {}",
                r.name,
                r.aggregate.as_deref().unwrap_or("?"),
                r.channels.join(", ")
            );
        }
    }
    let errors = catalog.errors();
    for e in &errors {
        eprintln!("error {e}");
    }
    if errors.is_empty() {
        println!("all good");
        Ok(0)
    } else {
        eprintln!("{} error(s)", errors.len());
        Ok(1)
    }
}
