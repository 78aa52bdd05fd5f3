//! `tocsin-bench`: runs the benchmark figures and writes `BENCHMARKS.md`.
//!
//! Normally started by `cargo xtask bench`, which first builds the plugins
//! and the release binaries and runs `host/benches/aggregate.rs` (figure
//! 1), passing its output with `--aggregate`. Every other figure starts
//! fresh processes per run (tocsin, Alertmanager, the webhook receiver,
//! the load generator) and stops them by pid afterwards. A figure that
//! fails is reported as "not measured" with its error, the others still
//! run, and the exit status is 1.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Parser;

use benchkit::report::{self, Section, Target, Unit};
use benchkit::servers::Ctx;

/// Runs tocsin's benchmark suite and writes BENCHMARKS.md.
#[derive(Parser, Debug)]
#[command(name = "tocsin-bench", version, about)]
struct Args {
    /// Fewer and shorter runs (one run per figure): a smoke test.
    #[arg(long)]
    quick: bool,
    /// Runs per figure (default 3, or 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Only these figures (comma-separated numbers 1-9).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
    /// Where to write the report (default: <root>/BENCHMARKS.md).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output of `cargo bench -p tocsin --bench aggregate` (figure 1).
    #[arg(long)]
    aggregate: Option<PathBuf>,
    /// The command line to print in the report's header.
    #[arg(long)]
    command: Option<String>,
    /// The repository root (rules/, plugins/dist/).
    #[arg(long)]
    root: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tocsin-bench: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("tocsin-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

const TITLES: [&str; 9] = [
    "1. Aggregation stage: WASM versus native, one core",
    "2. HTTP ingest and event → WebSocket latency",
    "3. RabbitMQ: tocsin versus a no-op consumer",
    "4. Delivery: webhook notifications through the outbox",
    "5. Hot reload of a plugin",
    "6. Memory (RSS)",
    "7. Side by side with Alertmanager",
    "8. Cluster: 1, 2 and 3 instances sharing Redis",
    "9. Hostile plugins beside a healthy rule",
];

/// Runs the selected figures; returns whether all of them were measured.
async fn run(args: Args) -> Result<bool> {
    let root = match &args.root {
        Some(r) => r.clone(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .context("cannot tell the repository root; pass --root")?,
    };
    let exe = std::env::current_exe().context("locating tocsin-bench")?;
    let bin_dir = exe
        .parent()
        .map(Path::to_path_buf)
        .context("tocsin-bench has no directory")?;
    let target = bin_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| bin_dir.clone());
    let ctx = Ctx {
        tocsin: bin_dir.join("tocsin"),
        loadgen: bin_dir.join("tocsin-loadgen"),
        tmp: target
            .join("bench-tmp")
            .join(format!("run-{}", std::process::id())),
        cache: target.join("bench-cache"),
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        quick: args.quick,
        root: root.clone(),
    };
    for (what, path, hint) in [
        ("tocsin", &ctx.tocsin, "cargo build --release -p tocsin"),
        (
            "tocsin-loadgen",
            &ctx.loadgen,
            "cargo build --release -p tocsin-bench",
        ),
    ] {
        if !path.is_file() {
            bail!(
                "{what} not found at {}: build it with `{hint}` (`cargo xtask bench` does both)",
                path.display()
            );
        }
    }
    if !ctx.plugin("threshold").is_file() {
        bail!(
            "{} not found: build the plugins with `cargo xtask plugins`",
            ctx.plugin("threshold").display()
        );
    }
    std::fs::create_dir_all(&ctx.tmp).with_context(|| format!("creating {}", ctx.tmp.display()))?;
    std::fs::create_dir_all(&ctx.cache)
        .with_context(|| format!("creating {}", ctx.cache.display()))?;

    let selected = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let started = Instant::now();
    let load_before = loadavg();
    // Read now, not when the report is written: the binaries were built
    // from the tree as it is now, and it may change while figures run.
    let commit = git_commit(&ctx.root);
    let mut sections = Vec::new();
    let mut all_ok = true;
    for n in 1..=9u8 {
        if !selected(n) {
            continue;
        }
        let title = TITLES[usize::from(n) - 1];
        if n != 1 {
            // Figure 1 ran (and announced itself) under `cargo xtask bench`.
            eprintln!("== {title}");
        }
        let result = match n {
            1 => figure1(args.aggregate.as_deref()),
            2 => benchkit::fig_http::run(&ctx).await,
            3 => benchkit::fig_amqp::run(&ctx).await,
            4 => benchkit::fig_delivery::run(&ctx).await,
            5 => benchkit::fig_reload::run(&ctx).await,
            6 => benchkit::fig_memory::run(&ctx).await,
            7 => benchkit::fig_alertmanager::run(&ctx).await,
            8 => benchkit::fig_cluster::run(&ctx).await,
            _ => benchkit::fig_hostile::run(&ctx).await,
        };
        match result {
            Ok(s) => sections.push(s),
            Err(e) => {
                eprintln!("== {title}: NOT MEASURED: {e:#}");
                all_ok = false;
                let mut s = Section::failed(title, &e);
                // Keep the figure's targets in the summary, as not measured.
                for (what, goal) in targets_of(n) {
                    s.targets
                        .push(Target::new(*what, *goal, "not measured (see below)", None));
                }
                sections.push(s);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&ctx.tmp);

    let command = args.command.clone().unwrap_or_else(|| {
        let mut parts: Vec<String> = std::env::args().collect();
        if let Some(first) = parts.first_mut() {
            *first = "tocsin-bench".into();
        }
        parts.join(" ")
    });
    let text = render(
        &ctx,
        &sections,
        &command,
        &commit,
        started.elapsed().as_secs_f64(),
        &load_before,
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("BENCHMARKS.md"));
    write_atomically(&out, &text)?;
    eprintln!(
        "wrote {} ({:.0} s){}",
        out.display(),
        started.elapsed().as_secs_f64(),
        if all_ok {
            ""
        } else {
            "; some figures were not measured"
        }
    );
    Ok(all_ok)
}

/// The targets figure `n` reports, for the summary when it fails.
fn targets_of(n: u8) -> &'static [(&'static str, &'static str)] {
    match n {
        1 => &[(
            "WASM aggregation, one core",
            "≥ 500k events/s and ≤ 3× native",
        )],
        2 => &[
            ("event → WebSocket frame p99 at 10k events/s", "≤ 2 ms"),
            ("event → WebSocket frame p50, idle", "≤ 0.3 ms"),
        ],
        3 => &[("AMQP consumed + processed, vs a no-op consumer", "≥ 90 %")],
        4 => &[("webhook notifications/s in a 10k burst", "≥ 18.6k/s")],
        5 => &[
            ("hot swap, cold (plugin lands → new hash live)", "≤ 150 ms"),
            ("hot swap, cached", "≤ 20 ms"),
            (
                "events lost / duplicated across 100 swaps at 10k events/s",
                "0 / 0",
            ),
        ],
        6 => &[("RSS with 100k live keys", "≤ 64 MiB")],
        8 => &[("cluster: alerts exact with 1, 2 and 3 instances", "exact")],
        9 => &[("healthy rule p99 with hostile rules loaded", "≤ 2× without")],
        _ => &[
            ("accepted alerts/s vs Alertmanager, batch 1", "≥ 4×"),
            (
                "accepted alerts/s vs Alertmanager, batch 10 and 100",
                "≥ 5×",
            ),
            (
                "100k distinct alerts: accepted/s and RSS vs Alertmanager",
                "≥ 8× at ≤ ¼ of its RSS",
            ),
        ],
    }
}

/// Figure 1: the table `host/benches/aggregate.rs` printed.
fn figure1(path: Option<&Path>) -> Result<Section> {
    let path = path.context(
        "the aggregation benchmark runs under cargo: use `cargo xtask bench`, or pass \
         --aggregate <output of `cargo bench -p tocsin --bench aggregate`>",
    )?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut s = Section::new(TITLES[0]);
    let (table, notes): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| !l.starts_with("machine CPU"));
    s.para(
        "`cargo bench -p tocsin --bench aggregate` (`host/benches/aggregate.rs`): the \
         `threshold` plugin as WebAssembly versus the same `logic.rs` compiled natively, both \
         against the host's embedded state store, on a current-thread runtime (one core). \
         Best of 5 rounds per row, as the benchmark prints it. The second table is the \
         aggregator template of `tocsin plugin new` — the same windowed counter — built in \
         Rust, Python (componentize-py) and JavaScript (ComponentizeJS) by `tocsin plugin \
         build`: events/s at batch 256, the uncached compile, the first call (instantiate, \
         configure, one event) and one instance's linear memory.",
    );
    let mut block = String::from("```\n");
    for l in &table {
        let _ = writeln!(block, "{l}");
    }
    block.push_str("```");
    s.para(block);
    for n in notes {
        s.para(format!("{n}."));
    }
    // Targets: ≥ 500k events/s/core and ≤ 3× native, at the batch sizes
    // the pipeline uses (256 typical under load, 512 its maximum).
    for batch in [256u32, 512] {
        let prefix = format!("wasm plugin, batch {batch} ");
        let row = table.iter().find(|l| l.starts_with(&prefix));
        let parsed = row.and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = f.len();
            let rate: f64 = f.get(n.checked_sub(3)?)?.parse().ok()?;
            let vs: f64 = f.get(n - 1)?.trim_end_matches('x').parse().ok()?;
            Some((rate, vs))
        });
        let (measured, met) = match parsed {
            Some((rate, vs)) => (
                format!("{}, {vs:.2}× native", report::fmt(rate, Unit::PerSec)),
                Some(rate >= 500_000.0 && vs <= 3.0),
            ),
            None => ("not in the output".to_string(), None),
        };
        s.targets.push(Target::new(
            format!("WASM aggregation, one core, batch {batch}"),
            "≥ 500k events/s and ≤ 3× native",
            measured,
            met,
        ));
    }
    Ok(s)
}

fn render(
    ctx: &Ctx,
    sections: &[Section],
    command: &str,
    commit: &str,
    secs: f64,
    load_before: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# tocsin benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by the benchmark suite (`bench/`); do not edit by hand, run the command \
         below again.\n"
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| command | `{command}` |");
    let _ = writeln!(
        out,
        "| date | {} (took {:.0} s) |",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        secs
    );
    let _ = writeln!(out, "| machine | {} |", machine());
    let _ = writeln!(
        out,
        "| load average | {load_before} at the start, {} at the end |",
        loadavg()
    );
    let _ = writeln!(out, "| rustc | {} |", command_line("rustc", &["--version"]));
    let _ = writeln!(out, "| tocsin | {commit} (when the run started) |");
    let _ = writeln!(
        out,
        "| Alertmanager | {} |",
        benchkit::servers::alertmanager_version().unwrap_or_else(|e| format!("{e:#}"))
    );
    let _ = writeln!(
        out,
        "| runs | {} per figure{} |",
        ctx.runs,
        if ctx.quick { " (--quick)" } else { "" }
    );
    let _ = writeln!(out);
    out.push_str(
        "**How to read the CPU columns.** Every run lists, after its value, the CPU used while \
         it was measured, in cores (CPU seconds ÷ wall seconds; this machine has the number \
         of cores above): the server under test, the load generator (plus the webhook \
         receiver where there is one), the RabbitMQ broker where it matters, and everything \
         else on the machine (`/proc/stat` busy time minus the processes we know). When the \
         server is well under its cores while the generator or *other* is high, the server \
         was not the limit.\n\n",
    );
    let _ = writeln!(out, "## Targets\n");
    out.push_str(&report::targets_table(sections));
    out.push('\n');
    for s in sections {
        let _ = writeln!(out, "## {}\n", s.title);
        out.push_str(&s.body);
    }
    out
}

/// `nproc`, CPU model and memory.
fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown memory".into());
    format!("{cores} cores (nproc), {model}, {mem} RAM")
}

/// `/proc/loadavg`'s three averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The first line a command prints, or why it could not run.
fn command_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Ok(o) => format!("`{program}` failed ({})", o.status),
        Err(e) => format!("`{program}` not runnable: {e}"),
    }
}

/// The checked-out commit, and whether the tree has uncommitted changes
/// (then the figures are of that commit plus those changes).
fn git_commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit} with uncommitted changes")
            } else {
                commit
            }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
