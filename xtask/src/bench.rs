//! `cargo xtask bench [--quick] [--only 1,3] [--runs N]`: the benchmark
//! suite, one command to `BENCHMARKS.md`.
//!
//! 1. builds the plugins, and `tocsin`, `tocsin-bench`, `tocsin-loadgen` in
//!    release mode (benchmarks of a debug build mean nothing);
//! 2. builds and runs `host/benches/aggregate.rs` (figure 1) and keeps its
//!    tables, with how busy the machine was meanwhile; for its language
//!    table it first builds the aggregator template in Rust, Python and
//!    JavaScript with the release `tocsin plugin new` / `plugin build`;
//! 3. runs `tocsin-bench`, which measures figures 2-9 on fresh processes
//!    and writes `BENCHMARKS.md` at the repository root.
//!
//! Not part of `cargo xtask test`: benchmarks are not tests, and they want
//! the machine to themselves.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask bench [--quick] [--only N,N,...] [--runs N]

  --quick       one short run per figure (a smoke test)
  --only LIST   only these figures (1 aggregation, 2 HTTP, 3 RabbitMQ,
                4 delivery, 5 hot reload, 6 memory, 7 Alertmanager,
                8 cluster, 9 hostile plugins)
  --runs N      runs per figure (default 3; 1 with --quick)

Needs RabbitMQ on 127.0.0.1:5672 (figures 3, 8), Redis on 127.0.0.1:6379
(figure 8) and prometheus-alertmanager
(figure 7, `cargo xtask clients` installs it). Writes BENCHMARKS.md.";

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        Some(p) => root.join(p),
        None => root.join("target"),
    }
}

/// The figures `--only` selects (`None`: all).
fn only(args: &[String]) -> Result<Option<Vec<u8>>> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let list = if a == "--only" {
            it.next().context("--only needs a list, e.g. --only 2,3")?
        } else if let Some(v) = a.strip_prefix("--only=") {
            v
        } else {
            continue;
        };
        let figures = list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|n| (1..=9).contains(n))
                    .with_context(|| format!("--only: {s:?} is not a figure number 1-9"))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(Some(figures));
    }
    Ok(None)
}

/// Machine-wide (busy, total) CPU ticks from `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some((busy, busy + get(3) + get(4)))
}

/// Builds the aggregation benchmark; returns its executable.
///
/// The executable is then run directly rather than through `cargo bench`,
/// so no rebuild (of a file edited meanwhile) can land inside the
/// measured window and count as "the machine was busy".
fn build_aggregate(root: &Path) -> Result<PathBuf> {
    let mut c = crate::cargo();
    c.args([
        "bench",
        "-p",
        "tocsin",
        "--bench",
        "aggregate",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(root)
    .stdout(Stdio::piped());
    let out = c
        .spawn()
        .context("starting cargo bench --no-run")?
        .wait_with_output()
        .context("building the aggregation benchmark")?;
    if !out.status.success() {
        bail!("building the aggregation benchmark failed ({})", out.status);
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "aggregate" {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo built no `aggregate` benchmark executable")
}

/// Builds the aggregator template in each language with the release
/// `tocsin` (as a plugin author would); `lang=path;…` for the benchmark.
fn language_plugins(root: &Path) -> Result<String> {
    let target = target_dir(root);
    let tocsin = target.join("release").join("tocsin");
    let dir = target.join("bench").join("languages");
    let _ = std::fs::remove_dir_all(&dir);
    let mut list = String::new();
    for lang in ["rust", "python", "js"] {
        let name = format!("bench-{lang}");
        let project = dir.join(&name);
        let run = |args: &[&str], what: &str| -> Result<()> {
            let mut c = Command::new(&tocsin);
            c.args(args)
                .env("TOCSIN_TOOLCHAINS", target.join("plugin-toolchains"))
                .env("CARGO_TARGET_DIR", target.join("plugin-kit"))
                .stdout(Stdio::null());
            crate::status(c, what)
        };
        let shown = project.display().to_string();
        run(
            &["plugin", "new", &name, "--lang", lang, "--dir", &shown],
            &format!("tocsin plugin new {name}"),
        )?;
        run(
            &["plugin", "build", &shown],
            &format!("tocsin plugin build ({lang})"),
        )?;
        let _ = write!(
            list,
            "{lang}={};",
            project.join(format!("{name}.wasm")).display()
        );
    }
    Ok(list)
}

/// Runs the aggregation benchmark, echoing and capturing its output, and
/// appends how busy the machine was meanwhile.
fn aggregate(root: &Path, out: &Path) -> Result<()> {
    let exe = build_aggregate(root)?;
    let languages = language_plugins(root)?;
    eprintln!("== 1. Aggregation stage: WASM versus native, one core");
    let before = machine_ticks();
    // Run as `cargo bench` runs it: from the package directory, with
    // `--bench` (which this harness-less benchmark ignores).
    let mut child = Command::new(&exe)
        .arg("--bench")
        .env("TOCSIN_BENCH_LANGS", &languages)
        .current_dir(root.join("host"))
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("no stdout from the aggregation benchmark")?;
    let mut captured = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the aggregation benchmark's output")?;
        eprintln!("{line}");
        captured.push_str(&line);
        captured.push('\n');
    }
    let status = child
        .wait()
        .context("waiting for the aggregation benchmark")?;
    if !status.success() {
        bail!("the aggregation benchmark failed ({status})");
    }
    if let (Some((b0, t0)), Some((b1, t1))) = (before, machine_ticks()) {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * cores as f64;
        captured.push_str(&format!(
            "machine CPU busy during the benchmark: {busy:.2} of {cores} cores on average (the benchmark itself keeps one busy)\n"
        ));
    }
    std::fs::write(out, captured).with_context(|| format!("writing {}", out.display()))
}

/// `cargo xtask bench ARGS`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let figures = only(args)?;
    crate::plugins::build_plugins(root)?;
    let mut build = crate::cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "tocsin",
        "-p",
        "tocsin-bench",
        "--bins",
    ]);
    crate::status(build, "building tocsin and the benchmark suite (release)")?;

    let target = target_dir(root);
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let runner = target.join("release").join("tocsin-bench");
    if !runner.is_file() {
        bail!(
            "{} was not built (is CARGO_BUILD_TARGET set? the suite runs on the host)",
            runner.display()
        );
    }
    let mut c = Command::new(&runner);
    c.current_dir(root)
        .arg("--root")
        .arg(root)
        .arg("--command")
        .arg(
            std::iter::once("cargo xtask bench".to_string())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
        );
    if figures.as_ref().is_none_or(|f| f.contains(&1)) {
        let file = out_dir.join("aggregate.txt");
        aggregate(root, &file)?;
        c.arg("--aggregate").arg(&file);
    }
    c.args(args);
    crate::status(c, "tocsin-bench")
}
