//! Figure 5: hot reload of a plugin, and whether a stream of swaps loses
//! or doubles any event.
//!
//! A swap is what an operator (or `cargo xtask plugins`) does: write the
//! new component to a temp file in the plugins directory, then rename it
//! over `threshold.wasm`. It is timed from the rename until
//! `GET /v1/plugins` shows the new content hash. *Cold*: bytes never seen
//! before (a unique custom section appended, so the compile cache cannot
//! have them). *Cached*: a version compiled earlier in the run, so the
//! compile cache serves it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::args;
use crate::cpu::{self, Groups};
use crate::http::Conn;
use crate::report::{self, num, progress, Cpu, Row, Run, Section, Target, Unit};
use crate::servers::{loadgen_background, Ctx, Tocsin, TocsinSetup};

const FIG: &str = "5 reload";
const PLUGIN: &str = "threshold";

/// `bytes` plus a custom section named `tocsin-bench-variant` holding
/// `tag`: the same component to the runtime, a new content hash to the
/// compile cache. Section sizes are LEB128.
pub fn variant(bytes: &[u8], tag: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"tocsin-bench-variant";
    let mut payload = Vec::new();
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    leb128(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Replaces `<dir>/threshold.wasm` atomically: a hidden temp file (not
/// `*.wasm`, so the watcher ignores it), then a rename. Returns the
/// instant of the rename.
fn land(dir: &Path, bytes: &[u8]) -> Result<Instant> {
    let tmp = dir.join(format!(".{PLUGIN}.wasm.bench.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(format!("{PLUGIN}.wasm")))
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(Instant::now())
}

/// What `/v1/plugins` says about the plugin once it shows `hash`.
struct Swapped {
    ms: f64,
    cached: Option<bool>,
    compile_ms: Option<f64>,
}

/// Lands `bytes` and polls `/v1/plugins` (every millisecond) until the
/// plugin's hash is theirs.
async fn swap(conn: &mut Conn, dir: &Path, bytes: &[u8]) -> Result<Swapped> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    let landed = land(dir, bytes)?;
    let deadline = landed + Duration::from_secs(30);
    loop {
        let v = conn.get_json("/v1/plugins").await?;
        let entry = v["plugins"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == PLUGIN))
            .ok_or_else(|| anyhow!("{PLUGIN} is not in /v1/plugins: {v}"))?;
        if entry["hash"].as_str() == Some(hash.as_str()) {
            return Ok(Swapped {
                ms: landed.elapsed().as_secs_f64() * 1000.0,
                cached: entry["cached"].as_bool(),
                compile_ms: entry["compile_ms"].as_f64(),
            });
        }
        if let Some(err) = entry["last_error"].as_str() {
            if !err.is_empty() && entry["hash"].as_str() != Some(hash.as_str()) {
                // An error about an older file can linger; only fail late.
                if Instant::now() > landed + Duration::from_secs(5) {
                    bail!("the swapped {PLUGIN} was refused: {err}");
                }
            }
        }
        if Instant::now() > deadline {
            bail!("{PLUGIN} did not show hash {} within 30 s", &hash[..12]);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn setup() -> TocsinSetup {
    TocsinSetup {
        default_rules: true,
        rules: vec![(
            "bench-reload.toml".into(),
            report::rule(
                Some("BENCH_RELOAD"),
                1,
                "1m",
                "\"error-code\", \"service-name\"",
                report::WS_CHANNEL,
            ),
        )],
        env: Vec::new(),
        listen: None,
    }
}

/// Runs figure 5.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new("5. Hot reload of a plugin");
    let original = std::fs::read(ctx.plugin(PLUGIN)).with_context(|| {
        format!(
            "reading {} (build the plugins with `cargo xtask plugins`)",
            ctx.plugin(PLUGIN).display()
        )
    })?;
    let per_kind = ctx.pick(5usize, 2);
    let swaps_under_load = ctx.pick(100usize, 20);
    let rate = 10_000.0;
    let mut cold = Row::new("cold (never compiled)", Unit::Millis);
    let mut cached = Row::new("cached (compiled before)", Unit::Millis);
    let mut lost = Row::new(
        format!("{swaps_under_load} swaps at 10k events/s: events lost"),
        Unit::Count,
    );
    let mut dup = Row::new(
        format!("{swaps_under_load} swaps at 10k events/s: events duplicated"),
        Unit::Count,
    );
    let mut compile_notes = Vec::new();
    for r in 0..ctx.runs {
        let t = Tocsin::start(ctx, &setup()).await?;
        let mut conn = Conn::connect(&t.addr).await?;
        let groups = Groups::default().with("server", vec![t.pid()]);
        // Cold swaps; the last two variants are then "compiled before".
        let mut variants = Vec::new();
        for _ in 0..per_kind {
            let tag = uuid::Uuid::new_v4().simple().to_string();
            let bytes = variant(&original, tag.as_bytes());
            let before = cpu::snapshot(&groups);
            let s = swap(&mut conn, &t.plugins_dir, &bytes).await?;
            let cpu = runner_cpu(&before, &cpu::snapshot(&groups));
            if s.cached == Some(true) {
                bail!("a never-seen variant was served from the compile cache");
            }
            if let Some(c) = s.compile_ms {
                compile_notes.push(c);
            }
            cold.runs.push(Run {
                value: s.ms,
                cpu: Some(cpu),
                note: None,
            });
            variants.push(bytes);
            // Longer than the watcher's quiet period, so swaps stay apart.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let a = original.clone();
        let b = variants
            .last()
            .cloned()
            .ok_or_else(|| anyhow!("no variant"))?;
        // The plugins directory now holds `b`; alternate a, b, a, ...
        let mut current_is_a = false;
        for _ in 0..per_kind {
            current_is_a = !current_is_a;
            let bytes = if current_is_a { &a } else { &b };
            let before = cpu::snapshot(&groups);
            let s = swap(&mut conn, &t.plugins_dir, bytes).await?;
            let cpu = runner_cpu(&before, &cpu::snapshot(&groups));
            cached.runs.push(Run {
                value: s.ms,
                cpu: Some(cpu),
                note: (s.cached == Some(false)).then(|| "recompiled".to_string()),
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        progress(
            FIG,
            format!(
                "run {}/{}: swaps timed; now {swaps_under_load} swaps at 10k events/s",
                r + 1,
                ctx.runs
            ),
        );

        // Swaps under load: lost or doubled events?
        let load = loadgen_background(
            ctx,
            args![
                "post",
                "--addr",
                t.addr,
                "--batch",
                10,
                "--conns",
                4,
                "--rate",
                rate,
                "--until-eof",
                "--code",
                "BENCH_RELOAD",
                "--services",
                100,
                "--cpu",
                format!("server={}", t.pid())
            ],
        )?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut swap_error = None;
        for _ in 0..swaps_under_load {
            current_is_a = !current_is_a;
            let bytes = if current_is_a { &a } else { &b };
            if let Err(e) = swap(&mut conn, &t.plugins_dir, bytes).await {
                swap_error = Some(e);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let v = load.finish().await?;
        if let Some(e) = swap_error {
            return Err(e.context("swapping under load"));
        }
        let sent = num(&v, "sent.events");
        let refused = num(&v, "sent.errors");
        // Wait for the pipeline to finish what was accepted.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (m, a) = rule_counts(&mut conn).await?;
            if (m >= sent && a >= sent) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let any duplicate show up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (matched, alerts) = rule_counts(&mut conn).await?;
        t.stop();
        let lost_n = (sent - matched).max(sent - alerts).max(0.0);
        let dup_n = (matched - sent).max(alerts - sent).max(0.0);
        let note = Some(format!(
            "{sent} sent, {matched} matched, {alerts} alerts{}",
            if refused > 0.0 {
                format!(", {refused} requests refused")
            } else {
                String::new()
            }
        ));
        let cpu = report::cpu_at(&v, "cpu");
        lost.runs.push(Run {
            value: lost_n,
            cpu: cpu.clone(),
            note: note.clone(),
        });
        dup.runs.push(Run {
            value: dup_n,
            cpu,
            note: None,
        });
        progress(
            FIG,
            format!(
                "run {}/{}: {sent} sent, {matched} matched, {alerts} alerts",
                r + 1,
                ctx.runs
            ),
        );
    }
    let compile = crate::stats::Spread::of(&compile_notes);
    section.para(format!(
        "The `{PLUGIN}` aggregator ({} KiB) is replaced while tocsin runs: written to a hidden \
         temp file in the plugins directory, renamed over `{PLUGIN}.wasm`, and timed until \
         `GET /v1/plugins` (polled every millisecond) shows the new content hash. {per_kind} \
         cold and {per_kind} cached swaps per run, 300 ms apart. tocsin's own compile time of \
         the cold swaps (`compile_ms` in `/v1/plugins`): {}. The CPU columns of the swap rows \
         are measured by the runner (generator = the runner polling).",
        original.len() / 1024,
        compile
            .map(|s| format!(
                "median {:.0} ms (min {:.0}, max {:.0})",
                s.median, s.min, s.max
            ))
            .unwrap_or_else(|| "not reported".into())
    ));
    section.para(format!(
        "Lost / duplicated: events posted open-loop at 10k events/s (batches of 10, 4 \
         connections) to a rule with threshold 1 while the plugin is swapped \
         {swaps_under_load} times back and forth between two compiled versions, each swap \
         waiting until the previous one is live. Afterwards `tocsin_events_matched_total` and \
         `tocsin_alerts_total` of the rule must both equal the events accepted."
    ));
    section.para(report::table(
        "swap",
        &[cold.clone(), cached.clone(), lost.clone(), dup.clone()],
        "tocsin / gen / other",
    ));
    let fmt_ms = |r: &Row| {
        r.median()
            .map(|v| report::fmt(v, Unit::Millis))
            .unwrap_or_else(|| "n/a".into())
    };
    section.targets.push(Target::new(
        "hot swap, cold (plugin lands → new hash live)",
        "≤ 150 ms",
        fmt_ms(&cold),
        cold.median().map(|v| v <= 150.0),
    ));
    section.targets.push(Target::new(
        "hot swap, cached",
        "≤ 20 ms",
        fmt_ms(&cached),
        cached.median().map(|v| v <= 20.0),
    ));
    let worst_lost = lost.spread().map(|s| s.max);
    let worst_dup = dup.spread().map(|s| s.max);
    section.targets.push(Target::new(
        format!(
            "events lost / duplicated across {swaps_under_load} swaps at 10k events/s (worst run)"
        ),
        "0 / 0",
        match (worst_lost, worst_dup) {
            (Some(l), Some(d)) => format!("{l:.0} / {d:.0}"),
            _ => "n/a".into(),
        },
        match (worst_lost, worst_dup) {
            (Some(l), Some(d)) => Some(l == 0.0 && d == 0.0),
            _ => None,
        },
    ));
    Ok(section)
}

/// `tocsin_events_matched_total` and `tocsin_alerts_total` of the rule.
async fn rule_counts(conn: &mut Conn) -> Result<(f64, f64)> {
    let labels = [("rule", "bench-reload")];
    Ok((
        conn.metric("tocsin_events_matched_total", &labels).await?,
        conn.metric("tocsin_alerts_total", &labels).await?,
    ))
}

/// The runner's own CPU counts as the generator here (it does the polling).
fn runner_cpu(a: &cpu::Snapshot, b: &cpu::Snapshot) -> Cpu {
    Cpu::from_usage(&cpu::usage(a, b))
}
