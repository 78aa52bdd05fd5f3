//! Figure 8: a cluster. The same RabbitMQ backlog drained by 1, 2 and 3
//! tocsin instances sharing state in Redis, and how many Redis round trips
//! each event costs.
//!
//! Every instance runs on this one machine, with the broker and Redis, so
//! the figure says what the shared-state protocol costs and whether more
//! instances help *here*; on 2 cores they compete for the same CPUs.
//! Exactness is checked on every run: the alerts fired across the cluster
//! must be exactly events ÷ threshold.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::amqp::{self, Names, DEFAULT_URL};
use crate::http::Conn;
use crate::payload::Events;
use crate::report::{self, progress, Row, Run, Section, Unit};
use crate::servers::{Ctx, Tocsin, TocsinSetup};

const FIG: &str = "8 cluster";
const THRESHOLD: u64 = 10;
const SERVICES: u64 = 300;
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Runs figure 8.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new("8. Cluster: 1, 2 and 3 instances sharing Redis");
    let n = ctx.pick(60_000u64, 15_000);
    let conn = amqp::connect(DEFAULT_URL).await?;
    let gen = Events {
        code: "BENCH_CLUSTER".into(),
        services: SERVICES,
    };
    let mut rates: Vec<Row> = (1..=3)
        .map(|k| Row::new(format!("{k} instance(s): events/s"), Unit::PerSec))
        .collect();
    let mut trips: Vec<Row> = (1..=3)
        .map(|k| {
            Row::new(
                format!("{k} instance(s): Redis round trips/event"),
                Unit::Decimal,
            )
        })
        .collect();
    for r in 0..ctx.runs {
        for k in 1..=3usize {
            let names = Names::unique(&format!("cluster{k}"));
            progress(
                FIG,
                format!("run {}/{}: {k} instance(s), {n} events", r + 1, ctx.runs),
            );
            amqp::publish(&conn, &names, n, |i| gen.event(i, 0)).await?;
            let result = drain(ctx, &names, n, k).await;
            amqp::cleanup(&conn, &names).await?;
            let (rate, per_event) = result?;
            progress(
                FIG,
                format!("{k} instance(s): {rate:.0} events/s, {per_event:.2} round trips/event"),
            );
            rates[k - 1].runs.push(Run {
                value: rate,
                cpu: None,
                note: None,
            });
            trips[k - 1].runs.push(Run {
                value: per_event,
                cpu: None,
                note: None,
            });
        }
    }
    let _ = conn.close(200, "done".into()).await;
    section.para(format!(
        "{n} persistent seed events over {SERVICES} keys are published into a fresh queue; then \
         1, 2 or 3 instances (`[redis] url` set, fresh `[redis] prefix`, default settings \
         otherwise) are started together on it, with one rule: threshold {THRESHOLD} per \
         (error code, service), WebSocket channel. Rate = events ÷ time from the first \
         processed event to the last (`tocsin_events_processed_total` summed over instances, \
         polled every 20 ms). Round trips = `tocsin_redis_round_trips_total` summed ÷ events: \
         every request or pipeline tocsin sends Redis (rule locks, key loads, the commit, \
         traces, heartbeats). Each run checks that exactly {} alerts fired across the \
         cluster. Everything — broker, Redis, the instances — shares this machine's 2 cores.",
        n / THRESHOLD
    ));
    let mut rows = rates.clone();
    rows.extend(trips.iter().cloned());
    section.para(report::table("instances", &rows, "—"));
    if let (Some(one), Some(three)) = (rates[0].median(), rates[2].median()) {
        section.para(format!(
            "3 instances drain at {:.2}× the rate of 1 on this machine (medians).",
            three / one
        ));
    }
    section.targets.push(report::Target::new(
        "cluster: alerts exact with 1, 2 and 3 instances",
        "exact",
        "exact in every run",
        Some(true),
    ));
    Ok(section)
}

/// Drains `names.queue` with `k` instances; returns (events/s, round trips
/// per event), failing if the alerts are not exact.
async fn drain(ctx: &Ctx, names: &Names, n: u64, k: usize) -> Result<(f64, f64)> {
    let prefix = format!(
        "bench-{}:",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut env = names.env(DEFAULT_URL);
    env.extend([
        ("TOCSIN_REDIS_URL".to_string(), REDIS_URL.to_string()),
        ("TOCSIN_REDIS_PREFIX".to_string(), prefix),
        // Dedup marks outlive the run only briefly: the shared Redis is
        // not flushed afterwards.
        (
            "TOCSIN_ENGINE_DEDUP_TTL_SECS".to_string(),
            "300".to_string(),
        ),
    ]);
    let setup = TocsinSetup {
        default_rules: false,
        rules: vec![(
            "bench-cluster.toml".into(),
            report::rule(
                Some("BENCH_CLUSTER"),
                THRESHOLD,
                "1h",
                "\"error-code\", \"service-name\"",
                report::WS_CHANNEL,
            ),
        )],
        env,
        listen: None,
    };
    let mut instances = Vec::new();
    for _ in 0..k {
        instances.push(Tocsin::spawn(ctx, &setup)?);
    }
    for t in &mut instances {
        t.wait_ready("/healthz").await?;
    }
    let mut clients = Vec::new();
    for t in &instances {
        clients.push(Conn::connect(&t.addr).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<Instant> = None;
    loop {
        let mut processed = 0.0;
        for c in &mut clients {
            processed += c.metric("tocsin_events_processed_total", &[]).await?;
        }
        let now = Instant::now();
        if processed > 0.0 && first.is_none() {
            first = Some(now);
        }
        if processed >= n as f64 {
            break;
        }
        if now > deadline {
            let logs: Vec<String> = instances.iter().map(Tocsin::log_tail).collect();
            bail!("only {processed} of {n} events processed in 600 s; logs:\n{logs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = first
        .map(|f| f.elapsed().as_secs_f64())
        .context("nothing processed")?;
    // Redelivered events count in `processed` again, so the last alerts
    // may still be in flight: wait until the count settles.
    let expected = (n / THRESHOLD) as f64;
    let mut alerts = 0.0;
    let mut settled_at = Instant::now();
    loop {
        let mut now_alerts = 0.0;
        for c in &mut clients {
            now_alerts += c
                .metric("tocsin_alerts_total", &[("rule", "bench-cluster")])
                .await?;
        }
        if now_alerts != alerts {
            alerts = now_alerts;
            settled_at = Instant::now();
        }
        if alerts >= expected || settled_at.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut round_trips = 0.0;
    for c in &mut clients {
        round_trips += c.metric("tocsin_redis_round_trips_total", &[]).await?;
    }
    if alerts != expected {
        let mut report = Vec::new();
        for (c, t) in clients.iter_mut().zip(&instances) {
            let mut line = String::new();
            for m in [
                "tocsin_events_processed_total",
                "tocsin_events_duplicate_total",
                "tocsin_events_failed_total",
                "tocsin_outbox_errors_total",
                "tocsin_state_degraded",
                "tocsin_state_reconciled_total",
                "tocsin_state_lock_lost_total",
                "tocsin_alerts_total",
                "tocsin_notifications_total",
            ] {
                line.push_str(&format!("{m}={} ", c.metric(m, &[]).await.unwrap_or(-1.0)));
            }
            report.push(format!("{line}\nlog: {}", t.log_tail()));
        }
        for t in instances {
            t.stop();
        }
        bail!(
            "{alerts} alerts committed across {k} instance(s), expected exactly {expected}: {report:#?}"
        );
    }
    for t in instances {
        t.stop();
    }
    Ok((n as f64 / elapsed.max(1e-9), round_trips / n as f64))
}
