//! Figure 4: webhook delivery through the durable outbox.
//!
//! A rule with threshold 1 and a `webhook` channel turns each event into
//! one delivery: written to the SQLite outbox (group commit), then posted
//! to the local receiver with its `Idempotency-Key`. The burst figure is
//! the receiver's view: from the first POST until it holds N distinct keys.
//! The latency figure runs at a steady rate and stops at the highest of
//! 10k, 5k, 2k, 1k events/s that the delivery keeps up with (the rate
//! held, p99 and the last delivery within 250 ms), and says which.

use anyhow::Result;

use crate::args;
use crate::fig_http::errors_note;
use crate::report::{self, cpu_at, num, progress, Row, Run, Section, Target, Unit};
use crate::servers::{loadgen, Ctx, Receiver, Tocsin, TocsinSetup};

const FIG: &str = "4 delivery";
/// Notifications in the burst.
const BURST: u64 = 10_000;
/// Steady rates tried, highest first.
const RATES: [f64; 4] = [10_000.0, 5_000.0, 2_000.0, 1_000.0];

fn setup(url: &str) -> TocsinSetup {
    TocsinSetup {
        default_rules: true,
        rules: vec![(
            "bench-webhook.toml".into(),
            report::rule(
                Some("BENCH_WEBHOOK"),
                1,
                "1m",
                "\"error-code\", \"service-name\"",
                &report::webhook_channel(url),
            ),
        )],
        env: Vec::new(),
        listen: None,
    }
}

/// tocsin's own view of its deliveries: the mean of
/// `tocsin_delivery_latency_seconds` (notification created in the pipeline
/// → webhook answered), in µs, written into the result as
/// `outbox_mean_us`. It splits an event → webhook latency into the part
/// before the notification exists (HTTP, queue, rules) and the part after
/// (durable writes, dispatch, the POST). Its clock has millisecond steps,
/// so only the mean is meaningful.
pub async fn add_outbox_mean(addr: &str, v: &mut serde_json::Value) {
    if let Ok((200, body)) = crate::http::get(addr, "/metrics").await {
        let text = String::from_utf8_lossy(&body);
        if let Some(mean) = crate::http::histogram_mean(&text, "tocsin_delivery_latency_seconds") {
            v["outbox_mean_us"] = serde_json::json!(mean * 1e6);
        }
    }
}

/// One steady-rate attempt on fresh processes.
async fn steady(ctx: &Ctx, rate: f64, secs: f64) -> Result<serde_json::Value> {
    let receiver = Receiver::start(ctx).await?;
    let t = Tocsin::start(ctx, &setup(&receiver.url())).await?;
    let v = loadgen(
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
            "--duration",
            secs,
            "--code",
            "BENCH_WEBHOOK",
            "--services",
            100,
            "--receiver",
            receiver.addr,
            "--count-by",
            "keys",
            "--wait-secs",
            20,
            "--cpu",
            format!("server={}", t.pid()),
            "--cpu",
            format!("receiver={}", receiver.pid())
        ],
    )
    .await;
    let v = match v {
        Ok(mut v) => {
            add_outbox_mean(&t.addr, &mut v).await;
            Ok(v)
        }
        Err(e) => Err(e),
    };
    t.stop();
    receiver.stop();
    v
}

/// How far behind a steady run may get and still count as keeping up: its
/// last notification within this long of its last event, and 99 % of all
/// within this long of theirs. A backlog that grows during the run breaks
/// both, while the normal delivery latency stays well below.
const MAX_BEHIND_S: f64 = 0.25;

/// Whether a steady run kept up: the generator held the rate (a server
/// that answers slowly makes an open-loop generator fall behind too),
/// everything arrived, and nothing waited more than [`MAX_BEHIND_S`].
fn keeps_up(v: &serde_json::Value, rate: f64) -> bool {
    let achieved = num(v, "sent.events") / num(v, "sent.elapsed_s");
    v["receiver"]["complete"].as_bool().unwrap_or(false)
        && achieved >= rate * 0.95
        && num(v, "receiver.tail_s") <= MAX_BEHIND_S
        && num(v, "receiver.latency.p99_us") <= MAX_BEHIND_S * 1e6
}

/// Runs figure 4.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new("4. Delivery: webhook notifications through the outbox");
    let mut burst = Row::new(
        format!("{BURST} burst: first POST → {BURST} distinct keys"),
        Unit::PerSec,
    );
    let mut total = Row::new(
        format!("{BURST} burst: first event sent → last webhook received"),
        Unit::Millis,
    );
    for r in 0..ctx.runs {
        let receiver = Receiver::start(ctx).await?;
        let t = Tocsin::start(ctx, &setup(&receiver.url())).await?;
        let v = loadgen(
            ctx,
            args![
                "post",
                "--addr",
                t.addr,
                "--batch",
                100,
                "--conns",
                4,
                "--total",
                BURST,
                "--code",
                "BENCH_WEBHOOK",
                "--services",
                100,
                "--receiver",
                receiver.addr,
                "--count-by",
                "keys",
                "--wait-secs",
                120,
                "--cpu",
                format!("server={}", t.pid()),
                "--cpu",
                format!("receiver={}", receiver.pid())
            ],
        )
        .await;
        t.stop();
        receiver.stop();
        let v = v?;
        let complete = v["receiver"]["complete"].as_bool().unwrap_or(false);
        let mut note = errors_note(&v);
        if !complete {
            note = Some(format!(
                "only {} of {BURST} delivered within 120 s",
                num(&v, "receiver.count")
            ));
        }
        let rate = num(&v, "receiver.rate");
        progress(
            FIG,
            format!(
                "burst run {}/{}: {rate:.0} notifications/s",
                r + 1,
                ctx.runs
            ),
        );
        burst.runs.push(Run {
            value: if complete { rate } else { f64::NAN },
            cpu: cpu_at(&v, "cpu"),
            note: note.clone(),
        });
        total.runs.push(Run {
            value: if complete {
                (num(&v, "sent.elapsed_s") + num(&v, "receiver.tail_s")) * 1000.0
            } else {
                f64::NAN
            },
            cpu: None,
            note,
        });
    }
    section.para(format!(
        "A rule with threshold 1 and a `webhook` channel (`http://127.0.0.1:PORT/hook`, \
         granted `127.0.0.1`): every event is one notification, written to the SQLite outbox \
         and then posted with its `Idempotency-Key` (default `[delivery] concurrency` 64). \
         Burst: {BURST} events posted in batches of 100 over 4 connections as fast as tocsin \
         takes them; notifications/s = {BURST} ÷ (time of the {BURST}th distinct key − time \
         of the first POST), both at the receiver. The receiver is a separate minimal hyper \
         server (`tocsin-loadgen receive`); its CPU is counted with the generator's."
    ));
    section.para(report::table(
        "burst",
        &[burst.clone(), total],
        "tocsin / gen+receiver / other",
    ));

    // Steady-rate latency: find the highest rate that keeps up (first run),
    // then repeat it.
    let secs = ctx.pick(5.0, 2.0);
    let mut chosen = None;
    let mut tried = Vec::new();
    let mut first = None;
    for rate in RATES {
        let v = steady(ctx, rate, secs).await?;
        let ok = keeps_up(&v, rate);
        progress(
            FIG,
            format!(
                "steady {rate:.0} events/s: {} (tail {:.2} s, p99 {:.0} µs)",
                if ok { "keeps up" } else { "falls behind" },
                num(&v, "receiver.tail_s"),
                num(&v, "receiver.latency.p99_us")
            ),
        );
        if ok {
            chosen = Some(rate);
            first = Some(v);
            break;
        }
        tried.push(format!(
            "{} (sent at {}, p99 {}, last webhook {:.2} s after the last event, {} of {} delivered)",
            report::fmt(rate, Unit::PerSec),
            report::fmt(num(&v, "sent.events") / num(&v, "sent.elapsed_s"), Unit::PerSec),
            report::fmt(num(&v, "receiver.latency.p99_us"), Unit::Micros),
            num(&v, "receiver.tail_s"),
            num(&v, "receiver.count"),
            num(&v, "receiver.expected")
        ));
    }
    let Some(rate) = chosen else {
        section.para(format!(
            "Steady-rate latency: not even {} kept up ({}).",
            report::fmt(RATES[RATES.len() - 1], Unit::PerSec),
            tried.join("; ")
        ));
        section.targets.push(Target::new(
            "webhook notifications/s in a 10k burst",
            "≥ 18.6k/s",
            burst
                .median()
                .map(|v| report::fmt(v, Unit::PerSec))
                .unwrap_or_else(|| "n/a".into()),
            burst.median().map(|v| v >= 18_600.0),
        ));
        return Ok(section);
    };
    let label = report::fmt(rate, Unit::PerSec);
    let mut p50 = Row::new(format!("{label}: p50"), Unit::Micros);
    let mut p99 = Row::new(format!("{label}: p99"), Unit::Micros);
    let mut outbox = Row::new(
        format!("{label}: of which notification created → webhook answered (mean)"),
        Unit::Micros,
    );
    let mut runs = Vec::new();
    if let Some(v) = first {
        runs.push(v);
    }
    while runs.len() < ctx.runs {
        runs.push(steady(ctx, rate, secs).await?);
    }
    for v in &runs {
        let mut notes = Vec::new();
        if !keeps_up(v, rate) {
            notes.push(format!(
                "fell behind: sent at {}, last webhook {:.2} s after the last event",
                report::fmt(
                    num(v, "sent.events") / num(v, "sent.elapsed_s"),
                    Unit::PerSec
                ),
                num(v, "receiver.tail_s")
            ));
        }
        if let Some(e) = errors_note(v) {
            notes.push(e);
        }
        let note = (!notes.is_empty()).then(|| notes.join(", "));
        let cpu = cpu_at(v, "cpu");
        p50.runs.push(Run {
            value: num(v, "receiver.latency.p50_us"),
            cpu: cpu.clone(),
            note: note.clone(),
        });
        p99.runs.push(Run {
            value: num(v, "receiver.latency.p99_us"),
            cpu,
            note,
        });
        outbox.runs.push(Run {
            value: num(v, "outbox_mean_us"),
            cpu: None,
            note: None,
        });
    }
    let mut text = format!(
        "Steady rate: events posted open-loop in batches of 10 over 4 connections for {secs} s; \
         latency from the event's send time (in its message) to the webhook's arrival at the \
         receiver, first 10 % left out as warm-up. "
    );
    if rate < RATES[0] {
        text.push_str(&format!(
            "**10k events/s did not keep up**, so this is the highest rate tried that did \
             ({label}: the rate held, p99 and the last webhook within 250 ms); higher rates: {}.",
            tried.join("; ")
        ));
    } else {
        text.push_str(
            "10k events/s kept up (the rate held, p99 and the last webhook within 250 ms).",
        );
    }
    section.para(text);
    section.para(
        "The last row is tocsin's own `tocsin_delivery_latency_seconds` histogram (mean; its \
         clock has millisecond steps): from the notification's creation in the pipeline to the \
         webhook's answer, i.e. the durable writes (state log, SQLite outbox), the dispatcher \
         and the POST. The rest of the event → webhook time is HTTP ingest, queueing and the \
         rules.",
    );
    section.para(report::table(
        "latency",
        &[p50, p99, outbox],
        "tocsin / gen+receiver / other",
    ));
    section.targets.push(Target::new(
        "webhook notifications/s in a 10k burst",
        "≥ 18.6k/s",
        burst
            .median()
            .map(|v| report::fmt(v, Unit::PerSec))
            .unwrap_or_else(|| "n/a".into()),
        burst.median().map(|v| v >= 18_600.0),
    ));
    Ok(section)
}
