//! Figure 2: HTTP ingest (`POST /v1/events`) and the latency from sending
//! an event to its notification on the WebSocket stream.
//!
//! Throughput is counted as *processed*: the generator posts for a fixed
//! time over 4 keep-alive connections, then polls
//! `tocsin_events_processed_total` until everything accepted went through
//! the pipeline; events/s is what was sent divided by the time until then.
//! Counting the `202`s alone would flatter a server that queues what it
//! cannot keep up with (tocsin's queue holds 4096 requests).
//!
//! The dashboard's counters (`[engine] stats`)
//! are on by default; the batch 10 and 100 workloads run once more with
//! them off, so their cost on the hot path is a figure.
//!
//! Latency runs through a rule with threshold 1, so each event makes one
//! notification; the event's message carries its send time, the WebSocket
//! client stamps the frame's arrival.

use anyhow::Result;

use crate::args;
use crate::report::{self, cpu_at, num, progress, Cpu, Row, Run, Section, Target, Unit};
use crate::servers::{loadgen, Ctx, Receiver, Tocsin, TocsinSetup};

const FIG: &str = "2 http";

fn setup() -> TocsinSetup {
    TocsinSetup {
        default_rules: true,
        rules: vec![
            (
                "bench-ingest.toml".into(),
                report::rule(
                    Some("BENCH_INGEST"),
                    100,
                    "1m",
                    "\"error-code\", \"service-name\"",
                    report::WS_CHANNEL,
                ),
            ),
            (
                "bench-latency.toml".into(),
                report::rule(
                    Some("BENCH_LATENCY"),
                    1,
                    "1m",
                    "\"error-code\", \"service-name\"",
                    report::WS_CHANNEL,
                ),
            ),
        ],
        env: Vec::new(),
        listen: None,
    }
}

/// Runs figure 2.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new("2. HTTP ingest and event → WebSocket latency");
    let duration = ctx.pick(5.0, 2.0);
    let mut rows = Vec::new();
    for (batch, stats) in [
        (1u64, true),
        (10, true),
        (10, false),
        (100, true),
        (100, false),
    ] {
        let off = if stats { "" } else { ", stats off" };
        let mut processed = Row::new(format!("batch {batch}{off}: processed"), Unit::PerSec);
        let mut accepted = Row::new(format!("batch {batch}{off}: accepted (202)"), Unit::PerSec);
        let mut with = setup();
        if !stats {
            with.env
                .push(("TOCSIN_ENGINE_STATS".into(), "false".into()));
        }
        for r in 0..ctx.runs {
            let t = Tocsin::start(ctx, &with).await?;
            let v = loadgen(
                ctx,
                args![
                    "post",
                    "--addr",
                    t.addr,
                    "--batch",
                    batch,
                    "--conns",
                    4,
                    "--duration",
                    duration,
                    "--code",
                    "BENCH_INGEST",
                    "--services",
                    100,
                    "--wait-processed",
                    "--cpu",
                    format!("server={}", t.pid())
                ],
            )
            .await?;
            t.stop();
            let sent = num(&v, "sent.events");
            let complete = v["processed"]["complete"].as_bool().unwrap_or(false);
            let rate = sent / num(&v, "processed.at_s");
            progress(
                FIG,
                format!(
                    "batch {batch}{off} run {}/{}: {rate:.0} events/s processed",
                    r + 1,
                    ctx.runs
                ),
            );
            let mut note = errors_note(&v);
            if !complete {
                note = Some(format!(
                    "only {} of {sent} processed within the wait",
                    num(&v, "processed.count")
                ));
            }
            processed.runs.push(Run {
                value: if complete { rate } else { f64::NAN },
                cpu: cpu_at(&v, "cpu"),
                note,
            });
            accepted.runs.push(Run {
                value: sent / num(&v, "sent.elapsed_s"),
                cpu: cpu_at(&v, "cpu_send"),
                note: None,
            });
        }
        rows.push(processed);
        rows.push(accepted);
    }
    let body_bytes = {
        let e = crate::payload::Events {
            code: "BENCH_INGEST".into(),
            services: 100,
        };
        e.event(0, 0).len()
    };
    section.para(format!(
        "`POST /v1/events` over 4 keep-alive connections, closed-loop, {duration} s per run; \
         seed events of {body_bytes} bytes (JSON), 100 services, the 11 default rules plus one \
         benchmark rule (threshold 100). *processed* = events sent ÷ time until \
         `tocsin_events_processed_total` counted them all; *accepted* = events in `202` answers ÷ \
         sending time. Fresh tocsin per run, default settings (2 pipeline workers); *stats off* \
         sets `[engine] stats = false` (no dashboard counters), so the difference is what the \
         counters cost the hot path."
    ));
    section.para(report::table("workload", &rows, "tocsin / gen / other"));

    // Latency, idle: one event at a time.
    let count = ctx.pick(1000u64, 200);
    let mut idle_p50 = Row::new("idle: p50", Unit::Micros);
    let mut idle_p99 = Row::new("idle: p99", Unit::Micros);
    let mut idle_accept = Row::new("idle: `202` round trip p50", Unit::Micros);
    let mut floor = Row::new(
        "baseline: round trip of a no-op HTTP server, p50",
        Unit::Micros,
    );
    for r in 0..ctx.runs {
        let receiver = Receiver::start(ctx).await?;
        let t = Tocsin::start(ctx, &setup()).await?;
        let v = loadgen(
            ctx,
            args![
                "idle",
                "--addr",
                t.addr,
                "--count",
                count,
                "--gap-ms",
                2,
                "--baseline",
                receiver.addr,
                "--cpu",
                format!("server={}", t.pid())
            ],
        )
        .await;
        t.stop();
        receiver.stop();
        let v = v?;
        floor.runs.push(Run {
            value: num(&v, "baseline.p50_us"),
            cpu: None,
            note: None,
        });
        let missing = num(&v, "missing");
        let note = (missing > 0.0).then(|| format!("{missing} frames missing"));
        let cpu = cpu_at(&v, "cpu");
        idle_p50.runs.push(Run {
            value: num(&v, "latency.p50_us"),
            cpu: cpu.clone(),
            note: note.clone(),
        });
        idle_p99.runs.push(Run {
            value: num(&v, "latency.p99_us"),
            cpu: cpu.clone(),
            note,
        });
        idle_accept.runs.push(Run {
            value: num(&v, "accept.p50_us"),
            cpu,
            note: None,
        });
        progress(
            FIG,
            format!(
                "idle latency run {}/{}: p50 {:.0} µs, p99 {:.0} µs",
                r + 1,
                ctx.runs,
                num(&v, "latency.p50_us"),
                num(&v, "latency.p99_us")
            ),
        );
    }

    // Latency at a steady 10k events/s, open-loop, one event per request.
    let rate = 10_000.0;
    let secs = ctx.pick(10.0, 3.0);
    let mut busy_p50 = Row::new("10k events/s: p50", Unit::Micros);
    let mut busy_p99 = Row::new("10k events/s: p99", Unit::Micros);
    let mut busy_lag = Row::new("10k events/s: generator pacing lag p99", Unit::Micros);
    let mut achieved_rates = Vec::new();
    for r in 0..ctx.runs {
        let t = Tocsin::start(ctx, &setup()).await?;
        let s = steady(ctx, &t, rate, secs, "BENCH_LATENCY", "bench-latency").await;
        t.stop();
        let s = s?;
        achieved_rates.push(s.achieved);
        busy_p50.runs.push(s.run("p50_us"));
        busy_p99.runs.push(s.run("p99_us"));
        busy_lag.runs.push(Run {
            value: num(&s.v, "sent.lag.p99_us"),
            cpu: s.cpu.clone(),
            note: None,
        });
        progress(
            FIG,
            format!(
                "10k/s latency run {}/{}: p50 {:.0} µs, p99 {:.0} µs",
                r + 1,
                ctx.runs,
                num(&s.v, "ws.latency.p50_us"),
                num(&s.v, "ws.latency.p99_us")
            ),
        );
    }
    section.para(format!(
        "Latency from the event's send time (stamped into its message just before the request \
         is written) to the WebSocket frame carrying it, read by a client on \
         `/v1/ws?rule=bench-latency` in the generator (rule threshold 1: one notification per \
         event). *Idle*: {count} events one at a time, each sent {} ms after the previous \
         frame arrived; the baseline posts the same events, the same way, to a minimal hyper \
         server (the webhook receiver) first: the floor this machine puts under any HTTP \
         round trip. *10k events/s*: open-loop for {secs} s, one event per request over 4 \
         connections, the first 10 % left out as warm-up; the pacing lag is how late the \
         generator wrote requests against the schedule (all 4 connections busy, or the \
         generator short of CPU).",
        2
    ));
    let lat_rows = [
        idle_p50.clone(),
        idle_p99,
        idle_accept,
        floor,
        busy_p50,
        busy_p99.clone(),
        busy_lag,
    ];
    section.para(report::table("latency", &lat_rows, "tocsin / gen / other"));

    let p99 = busy_p99.median();
    let achieved = crate::stats::Spread::of(&achieved_rates).map(|s| s.median);
    let held = achieved.is_some_and(|a| a >= rate * 0.95);
    let mut measured = p99
        .map(|v| report::fmt(v, Unit::Micros))
        .unwrap_or_else(|| "n/a".into());
    if let (false, Some(a)) = (held, achieved) {
        measured.push_str(&format!(
            " (the generator could only send {}: tocsin did not keep up)",
            report::fmt(a, Unit::PerSec)
        ));
    }
    section.targets.push(Target::new(
        "event → WebSocket frame p99 at 10k events/s",
        "≤ 2 ms",
        measured,
        p99.map(|v| v <= 2000.0 && held),
    ));
    let p50 = idle_p50.median();
    section.targets.push(Target::new(
        "event → WebSocket frame p50, idle",
        "≤ 0.3 ms",
        p50.map(|v| report::fmt(v, Unit::Micros))
            .unwrap_or_else(|| "n/a".into()),
        p50.map(|v| v <= 300.0),
    ));
    Ok(section)
}

/// One open-loop latency run ([`steady`]).
pub struct Steady {
    /// The generator's result (`ws.latency.*`, `sent.*`).
    pub v: serde_json::Value,
    /// Events per second actually sent.
    pub achieved: f64,
    /// Frames missing, failed requests, a rate short of the goal.
    pub note: Option<String>,
    /// CPU while sending.
    pub cpu: Option<Cpu>,
}

impl Steady {
    /// `ws.latency.<field>` (e.g. `p99_us`) as a run of a table row.
    pub fn run(&self, field: &str) -> Run {
        Run {
            value: num(&self.v, &format!("ws.latency.{field}")),
            cpu: self.cpu.clone(),
            note: self.note.clone(),
        }
    }
}

/// Posts `code` events open-loop at `rate` per second for `secs` s, one
/// event per request over 4 connections, and times each one to its frame
/// on `/v1/ws?rule=<rule>` (a threshold-1 rule: one frame per event); the
/// first 10 % are left out as warm-up.
pub async fn steady(
    ctx: &Ctx,
    t: &Tocsin,
    rate: f64,
    secs: f64,
    code: &str,
    rule: &str,
) -> Result<Steady> {
    let v = loadgen(
        ctx,
        args![
            "post",
            "--addr",
            t.addr,
            "--batch",
            1,
            "--conns",
            4,
            "--rate",
            rate,
            "--duration",
            secs,
            "--code",
            code,
            "--services",
            1,
            "--ws-rule",
            rule,
            "--cpu",
            format!("server={}", t.pid())
        ],
    )
    .await?;
    let missing = num(&v, "ws.missing");
    let mut notes = Vec::new();
    if missing > 0.0 {
        notes.push(format!("{missing} frames missing"));
    }
    if let Some(e) = errors_note(&v) {
        notes.push(e);
    }
    let achieved = num(&v, "sent.events") / num(&v, "sent.elapsed_s");
    if achieved < rate * 0.95 {
        notes.push(format!("achieved {}", report::fmt(achieved, Unit::PerSec)));
    }
    Ok(Steady {
        achieved,
        note: (!notes.is_empty()).then(|| notes.join(", ")),
        cpu: cpu_at(&v, "cpu_send"),
        v,
    })
}

/// "N failed requests: first error" when the generator saw failures.
pub fn errors_note(v: &serde_json::Value) -> Option<String> {
    let errors = num(v, "sent.errors");
    (errors > 0.0).then(|| {
        format!(
            "{errors} failed requests: {}",
            v["sent"]["first_error"].as_str().unwrap_or("?")
        )
    })
}
