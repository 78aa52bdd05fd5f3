//! Project tasks: `cargo xtask <task>`.
//!
//! - `plugins` — build every plugin (and test plugin) as a component.
//! - `clients` — install the real clients the ingest tests drive.
//! - `run [ARGS]` — build the plugins, then `tocsin run ARGS` on embedded defaults.
//! - `test` — start/check RabbitMQ and Redis, install the real ingest clients
//!   (amtool, Alertmanager, sentry-sdk), build the plugins, run every test.
//! - `bench [--quick] [--only N,..] [--runs N]` — the benchmark suite:
//!   build the plugins and the release binaries, run the aggregation
//!   benchmark and `tocsin-bench`, which writes `BENCHMARKS.md`.
//! - `fuzz [--seconds N] [--only T,..]` — every parser under libFuzzer
//!   (`fuzz/`), executions per target, fails on a crash.

mod bench;
mod clients;
mod fuzz;
mod plugins;
mod services;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn status(mut c: Command, what: &str) -> Result<()> {
    let s = c.status().with_context(|| format!("starting {what}"))?;
    if !s.success() {
        bail!("{what} failed ({s})");
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = root();
    match task.as_str() {
        "plugins" => plugins::build_plugins(&root),
        "clients" => clients::ensure(),
        "run" => {
            plugins::build_plugins(&root)?;
            let mut c = cargo();
            c.args(["run", "--quiet", "-p", "tocsin", "--", "run"])
                .args(&rest);
            status(c, "tocsin run")
        }
        "test" => {
            services::ensure()?;
            clients::ensure()?;
            plugins::build_plugins(&root)?;
            // The end-to-end tests drive the real binary: build it first
            // (`cargo test` only builds binaries of the package under test).
            let mut c = cargo();
            c.args(["build", "-p", "tocsin", "--bins"]);
            status(c, "building tocsin")?;
            let mut c = cargo();
            c.args(["test", "--workspace", "--no-fail-fast"])
                .args(&rest);
            status(c, "host tests")?;
            let mut c = cargo();
            c.args([
                "test",
                "--quiet",
                "--manifest-path",
                "plugins/Cargo.toml",
                "--target-dir",
                "plugins/target",
            ]);
            for var in ["RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
                c.env_remove(var);
            }
            status(c, "plugin unit tests")
        }
        "bench" => bench::run(&root, &rest),
        "fuzz" => fuzz::run(&root, &rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <plugins | clients | run [ARGS] | test [ARGS] | bench [ARGS] | fuzz [ARGS]>"
            );
            std::process::exit(2);
        }
    }
}
