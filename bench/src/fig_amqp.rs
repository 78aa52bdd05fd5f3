//! Figure 3: RabbitMQ intake. How fast tocsin drains a backlog of
//! persistent messages (consumed, processed through the rules, made
//! durable, acknowledged) against a consumer that does nothing but
//! acknowledge, on the same broker with the same prefetch.
//!
//! The no-op consumer is the ceiling the broker and the client library
//! allow on this machine; the ratio says how much of it tocsin keeps.
//! Each run publishes its own backlog into fresh, uniquely named queues
//! and deletes them afterwards.

use anyhow::{Context, Result};

use crate::amqp::{self, Names, DEFAULT_URL};
use crate::args;
use crate::cpu::pids_named;
use crate::payload::Events;
use crate::report::{self, cpu_at, num, progress, Row, Run, Section, Target, Unit};
use crate::servers::{free_port, loadgen, loadgen_background, Ctx, TempDir, Tocsin, TocsinSetup};

const FIG: &str = "3 amqp";

fn events() -> Events {
    Events {
        code: "BENCH_AMQP".into(),
        services: 100,
    }
}

/// Runs figure 3.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new("3. RabbitMQ: tocsin versus a no-op consumer");
    let n = ctx.pick(100_000u64, 20_000);
    let conn = amqp::connect(DEFAULT_URL).await?;
    let broker: Vec<u32> = pids_named("beam.smp");
    let broker_arg = if broker.is_empty() {
        Vec::new()
    } else {
        let list: Vec<String> = broker.iter().map(u32::to_string).collect();
        args!["--cpu", format!("broker={}", list.join(","))]
    };
    let gen = events();
    let mut tocsin_row = Row::new("tocsin: consumed + processed", Unit::PerSec);
    let mut noop_row = Row::new("no-op lapin consumer", Unit::PerSec);
    let mut ratio_row = Row::new("tocsin ÷ no-op", Unit::Ratio);
    let mut seq_row = Row::new(
        "diagnostic: no-op consumer acking one ack at a time from a separate task",
        Unit::PerSec,
    );
    for r in 0..ctx.runs {
        // Alternate which goes first, so drift (a neighbour's build
        // starting) does not always hit the same side.
        let mut pair = [f64::NAN, f64::NAN, f64::NAN];
        let order = if r % 2 == 0 { [0, 1, 2] } else { [1, 0, 2] };
        for which in order {
            let label = ["tocsin", "noop", "noop-seq"][which];
            let names = Names::unique(label);
            progress(
                FIG,
                format!(
                    "run {}/{}: publishing {n} persistent messages",
                    r + 1,
                    ctx.runs
                ),
            );
            let result = async {
                amqp::publish(&conn, &names, n, |i| gen.event(i, 0)).await?;
                if which == 0 {
                    drain_with_tocsin(ctx, &names, n, &broker_arg).await
                } else {
                    let mut a = args![
                        "amqp-noop",
                        "--url",
                        DEFAULT_URL,
                        "--queue",
                        names.queue,
                        "--count",
                        n
                    ];
                    if which == 2 {
                        a.push("--sequential-acks".into());
                    }
                    a.extend(broker_arg.iter().cloned());
                    loadgen(ctx, a).await
                }
            }
            .await;
            amqp::cleanup(&conn, &names).await?;
            let v = result?;
            let rate = num(&v, "rate");
            pair[which] = rate;
            let run = Run {
                value: rate,
                cpu: cpu_at(&v, "cpu"),
                note: None,
            };
            progress(
                FIG,
                format!("run {}/{}: {label} {rate:.0} messages/s", r + 1, ctx.runs,),
            );
            match which {
                0 => tocsin_row.runs.push(run),
                1 => noop_row.runs.push(run),
                _ => seq_row.runs.push(run),
            }
        }
        ratio_row.runs.push(Run {
            value: pair[0] / pair[1],
            cpu: None,
            note: None,
        });
    }
    let _ = conn.close(200, "done".into()).await;
    let bytes = gen.event(0, 0).len();
    section.para(format!(
        "{n} persistent messages ({bytes}-byte seed events, routing key `{}`) are published \
         into a fresh durable queue before the consumer starts; the drain is timed from the \
         consumer's first message (the queue's ready count drops) until the last one is \
         processed and the queue is empty. tocsin: `[amqp]` source with default settings \
         (prefetch {}, ack once the batch is durable), the 11 default rules plus one \
         benchmark rule; processed = `tocsin_events_processed_total`. No-op: a lapin 4 \
         consumer with the same prefetch that acknowledges each message and does nothing \
         else (its acks awaited concurrently with consuming). The broker's CPU (`beam.smp`) \
         is its own column. The diagnostic row is the same no-op consumer acking the way \
         tocsin's source settles deliveries: one `basic.ack` at a time, each awaited, from a \
         separate task; when it lands near tocsin, acknowledgement round trips (not rules or \
         durability) are what holds tocsin back.",
        amqp::ROUTING_KEY,
        amqp::PREFETCH
    ));
    section.para(report::table(
        "consumer",
        &[tocsin_row.clone(), noop_row, ratio_row.clone(), seq_row],
        "tocsin / gen / broker / other",
    ));
    let ratio = ratio_row.median();
    section.targets.push(Target::new(
        "AMQP consumed + processed, vs a no-op consumer",
        "≥ 90 %",
        ratio
            .map(|v| format!("{:.0} %", v * 100.0))
            .unwrap_or_else(|| "n/a".into()),
        ratio.map(|v| v >= 0.9),
    ));
    Ok(section)
}

/// Starts a watcher, then tocsin on the pre-published queue; returns the
/// watcher's result.
async fn drain_with_tocsin(
    ctx: &Ctx,
    names: &Names,
    n: u64,
    broker_arg: &[String],
) -> Result<serde_json::Value> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let dir = TempDir::new(ctx, "amqp-watch")?;
    let pid_file = dir.path().join("tocsin.pid");
    let mut a = args![
        "amqp-watch",
        "--url",
        DEFAULT_URL,
        "--queue",
        names.queue,
        "--count",
        n,
        "--metrics",
        listen,
        "--pid-file",
        pid_file.display()
    ];
    a.extend(broker_arg.iter().cloned());
    // The watcher is polling the queue before tocsin exists, so it sees
    // the very first message leave.
    let watcher = loadgen_background(ctx, a)?;
    let setup = TocsinSetup {
        default_rules: true,
        rules: vec![(
            "bench-amqp.toml".into(),
            report::rule(
                Some("BENCH_AMQP"),
                100,
                "1m",
                "\"error-code\", \"service-name\"",
                report::WS_CHANNEL,
            ),
        )],
        env: names.env(DEFAULT_URL),
        listen: Some(listen),
    };
    let t = Tocsin::spawn(ctx, &setup)?;
    std::fs::write(&pid_file, t.pid().to_string()).context("writing the pid file")?;
    let result = watcher.finish().await;
    let log = t.log_tail();
    t.stop();
    result.with_context(|| format!("tocsin's log:\n{log}"))
}
