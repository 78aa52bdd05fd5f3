//! `tocsin plugin …`: the plugin author's tools. `check` says what a
//! `.wasm` is and what is wrong with it; `test` runs it under the engine's
//! own sandbox on sample events, without an engine; `new` writes a
//! standalone project; `build` builds one.
//!
//! Why in the `tocsin` binary: the checks and the sandbox are the engine's
//! own code, so what `check` and `test` accept is what a running engine
//! accepts.

mod build;
mod check;
mod new;
mod test;
mod toolchain;
mod vendor;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::plugin::{HostSettings, Runtime, SandboxLimits, World};
use crate::state::StateStore;

/// `tocsin plugin` subcommands.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Say what a .wasm file is (world, exports, imports) and what is wrong
    /// with it; exit non-zero when the engine would refuse it.
    Check(check::CheckArgs),
    /// Run a plugin on sample events under the engine's sandbox and print
    /// what it did as JSON (alerts, chosen channels or deliveries, logs).
    Test(test::TestArgs),
    /// Write a new plugin project (source, unit test, sample events, rule).
    New(new::NewArgs),
    /// Build the plugin project in DIR into a component.
    Build(build::BuildArgs),
}

/// The world a plugin implements, as a command-line value.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WorldArg {
    Aggregator,
    Router,
    Channel,
}

impl From<WorldArg> for World {
    fn from(w: WorldArg) -> Self {
        match w {
            WorldArg::Aggregator => World::Aggregator,
            WorldArg::Router => World::Router,
            WorldArg::Channel => World::Channel,
        }
    }
}

/// Sandbox settings shared by `check` and `test`: the engine's defaults.
#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Deadline of one plugin call, in ms (`[sandbox] call_timeout_ms`).
    #[arg(long, default_value_t = crate::config::SandboxConfig::default().call_timeout_ms)]
    pub call_timeout_ms: u64,
    /// Linear-memory cap of one instance, in MiB (`[sandbox] memory_mb`).
    #[arg(long, default_value_t = crate::config::SandboxConfig::default().memory_mb)]
    pub memory_mb: usize,
}

/// Runs a `tocsin plugin` subcommand; returns the exit code.
pub async fn run(command: PluginCommand) -> anyhow::Result<i32> {
    match command {
        PluginCommand::Check(args) => check::run(args),
        PluginCommand::Test(args) => test::run(args).await,
        PluginCommand::New(args) => new::new(args).map(|()| 0),
        PluginCommand::Build(args) => build::build(args),
    }
}

/// A scratch runtime over a throw-away embedded state in `scratch`, with
/// the engine's sandbox, keeping plugin logs; compiled artifacts are cached
/// in the user's cache folder so a second run is fast.
fn scratch_runtime(sandbox: &SandboxArgs, scratch: &Path) -> anyhow::Result<Runtime> {
    let state =
        StateStore::open_embedded(&scratch.join("state")).context("opening scratch state")?;
    let limits = SandboxLimits {
        call_timeout: std::time::Duration::from_millis(sandbox.call_timeout_ms.max(1)),
        memory_bytes: sandbox.memory_mb.max(1) << 20,
        ..SandboxLimits::default()
    };
    let host = HostSettings {
        default_email_to: vec!["ops@example.com".into()],
        email_enabled: true,
        capture_logs: true,
    };
    let cache = cache_dir();
    if let Some(dir) = &cache {
        let _ = std::fs::create_dir_all(dir);
    }
    Ok(Runtime::new(limits, state, host, cache)?)
}

/// The engine's compile cache when `TOCSIN_ENGINE_CACHE` names one (so a
/// plugin tested here starts at once in an engine sharing it), else
/// `$XDG_CACHE_HOME/tocsin/compiled` or `~/.cache/tocsin/compiled`.
pub(super) fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TOCSIN_ENGINE_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    user_cache("compiled")
}

/// `$XDG_CACHE_HOME/tocsin/SUB`, else `~/.cache/tocsin/SUB`: where the
/// author's tools keep what they may rebuild (compiled plugins, toolchains).
fn user_cache(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tocsin").join(sub))
}

/// A fresh scratch folder, removed when dropped.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("tocsin-plugin-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// The folder.
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads a plugin file, saying which file could not be read.
fn read_wasm(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
