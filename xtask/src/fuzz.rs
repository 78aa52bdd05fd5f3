//! `cargo xtask fuzz [--seconds N] [--only T,..]`: every fuzz target of
//! `fuzz/` (one per parser reachable from outside, see
//! `host/src/fuzzing.rs`) under libFuzzer for N seconds each, starting
//! from the committed seeds (`fuzz/seeds/<target>`, real payloads of the
//! SDKs and tools) and the working corpus (`fuzz/corpus/<target>`, not
//! committed). Prints executions per target and fails on any crash; a
//! crash's input lands in `fuzz/artifacts/<target>/` — copy it to
//! `fuzz/regressions/<target>/` so the unit test
//! `fuzzing::tests::seeds_and_regressions_do_not_panic` keeps it fixed.
//!
//! Installs `cargo-fuzz` from the crate registry when missing. libFuzzer
//! needs a nightly toolchain for AddressSanitizer: with one (`rustup
//! toolchain list`), the targets run under ASan; without, with
//! `--sanitizer none` (coverage-guided all the same). Not part of
//! `cargo xtask test`: fuzzing wants minutes per target.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--only events,sentry,...]

  --seconds N   how long each target runs (default 60)
  --only LIST   only these targets (events, sentry, alertmanager, body,
                rule, config)";

/// The targets, as named in `fuzz/Cargo.toml` and `host/src/fuzzing.rs`.
const TARGETS: [&str; 6] = ["events", "sentry", "alertmanager", "body", "rule", "config"];

struct Args {
    seconds: u64,
    only: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut out = Args {
        seconds: 60,
        only: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context(USAGE)?;
                out.seconds = v
                    .parse()
                    .with_context(|| format!("--seconds {v}\n{USAGE}"))?;
            }
            "--only" => {
                let v = it.next().context(USAGE)?;
                out.only = v.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = out.only.iter().find(|t| !TARGETS.contains(&t.as_str())) {
                    bail!("unknown target {bad}\n{USAGE}");
                }
            }
            _ => bail!("unknown argument {a}\n{USAGE}"),
        }
    }
    Ok(out)
}

/// `cargo-fuzz`, installed if missing.
fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!("installing cargo-fuzz (crate registry)");
        super::status(
            {
                let mut c = Command::new("cargo");
                c.args(["install", "cargo-fuzz", "--locked"]);
                c
            },
            "cargo install cargo-fuzz",
        )?;
    }
    Ok(())
}

fn have_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What one target's run reported.
struct Run {
    target: &'static str,
    execs: u64,
    per_second: u64,
    crashed: bool,
}

/// The value of libFuzzer's `stat::<name>: N` line in `stderr`.
fn stat(stderr: &str, name: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

pub fn run(root: &Path, rest: &[String]) -> Result<()> {
    let args = parse(rest)?;
    ensure_cargo_fuzz()?;
    let nightly = have_nightly();
    let fuzz = root.join("fuzz");
    let mut runs = Vec::new();
    for target in TARGETS {
        if !args.only.is_empty() && !args.only.iter().any(|t| t == target) {
            continue;
        }
        let corpus = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let mut c = if nightly {
            let mut c = Command::new("rustup");
            c.args(["run", "nightly", "cargo", "fuzz", "run"]);
            c
        } else {
            let mut c = Command::new("cargo");
            c.args(["fuzz", "run", "--sanitizer", "none"]);
            c
        };
        c.current_dir(root)
            .args(["--fuzz-dir", "fuzz", target])
            .arg(&corpus)
            .arg(fuzz.join("seeds").join(target))
            .args([
                "--",
                &format!("-max_total_time={}", args.seconds),
                "-print_final_stats=1",
                "-max_len=262144",
                "-rss_limit_mb=4096",
            ])
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        for var in ["RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
            c.env_remove(var);
        }
        eprintln!("== fuzz {target} for {} s", args.seconds);
        let out = c
            .output()
            .with_context(|| format!("running cargo fuzz {target}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let execs = stat(&stderr, "number_of_executed_units");
        let crashed = !out.status.success();
        if crashed {
            eprintln!("{stderr}");
        }
        runs.push(Run {
            target,
            execs,
            per_second: execs / args.seconds.max(1),
            crashed,
        });
    }
    println!("\n| target | executions | per second | result |\n|---|---:|---:|---|");
    for r in &runs {
        let result = if r.crashed {
            "CRASH (see fuzz/artifacts)"
        } else {
            "no crash"
        };
        println!(
            "| {} | {} | {} | {result} |",
            r.target, r.execs, r.per_second
        );
    }
    let total: u64 = runs.iter().map(|r| r.execs).sum();
    println!(
        "| total | {total} | | {} |\n\nsanitizer: {}",
        if runs.iter().any(|r| r.crashed) {
            "crashes"
        } else {
            "0 crashes"
        },
        if nightly { "address (nightly)" } else { "none" }
    );
    if runs.iter().any(|r| r.crashed) {
        bail!("a fuzz target crashed: its input is under fuzz/artifacts/");
    }
    Ok(())
}
