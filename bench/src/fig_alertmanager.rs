//! Figure 7: tocsin side by side with Alertmanager, on the same
//! `POST /api/v2/alerts` workload, delivering to the same webhook receiver.
//!
//! Runs are interleaved (tocsin, then Alertmanager, for each run of each
//! workload) on fresh instances, so a neighbour's load hits both alike.
//! Alertmanager: clustering off, storage in a temp dir, one route grouping
//! by alertname with group_wait 0s, group_interval 1s, repeat_interval 1h.
//! tocsin: one rule matching every alert, the threshold plugin keyed by
//! error-code (= alertname) with threshold 1, a webhook channel. Every
//! posted alert has its own alertname, so both send exactly one
//! notification per alert.

use anyhow::Result;

use crate::args;
use crate::cpu::rss_bytes;
use crate::fig_http::errors_note;
use crate::report::{self, cpu_at, num, progress, Row, Run, Section, Target, Unit};
use crate::servers::{loadgen, Alertmanager, Ctx, Receiver, Tocsin, TocsinSetup};

const FIG: &str = "7 alertmanager";

#[derive(Clone, Copy, PartialEq)]
enum System {
    Tocsin,
    Alertmanager,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Tocsin => "tocsin",
            System::Alertmanager => "Alertmanager",
        }
    }
}

enum Server {
    Tocsin(Tocsin),
    Alertmanager(Alertmanager),
}

impl Server {
    async fn start(ctx: &Ctx, system: System, webhook: &str) -> Result<Self> {
        Ok(match system {
            System::Tocsin => {
                let setup = TocsinSetup {
                    default_rules: false,
                    rules: vec![(
                        "every-alert.toml".into(),
                        report::rule(
                            None,
                            1,
                            "5m",
                            "\"error-code\"",
                            &report::webhook_channel(webhook),
                        ),
                    )],
                    env: Vec::new(),
                    listen: None,
                };
                Server::Tocsin(Tocsin::start(ctx, &setup).await?)
            }
            System::Alertmanager => Server::Alertmanager(Alertmanager::start(ctx, webhook).await?),
        })
    }

    fn addr(&self) -> &str {
        match self {
            Server::Tocsin(t) => &t.addr,
            Server::Alertmanager(a) => &a.addr,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Server::Tocsin(t) => t.pid(),
            Server::Alertmanager(a) => a.pid(),
        }
    }

    fn stop(self) {
        match self {
            Server::Tocsin(t) => t.stop(),
            Server::Alertmanager(a) => a.stop(),
        }
    }
}

/// One run on a fresh server and receiver: the generator's result and the
/// server's RSS once it returned.
async fn one(ctx: &Ctx, system: System, load: Vec<String>) -> Result<(serde_json::Value, f64)> {
    let receiver = Receiver::start(ctx).await?;
    let server = Server::start(ctx, system, &receiver.url()).await?;
    let mut a = args!["post", "--addr", server.addr(), "--kind", "alerts"];
    a.extend(load);
    a.extend(args![
        "--receiver",
        receiver.addr,
        "--count-by",
        "seqs",
        "--cpu",
        format!("server={}", server.pid()),
        "--cpu",
        format!("receiver={}", receiver.pid())
    ]);
    let mut v = loadgen(ctx, a).await;
    if let (Ok(v), Server::Tocsin(t)) = (v.as_mut(), &server) {
        crate::fig_delivery::add_outbox_mean(&t.addr, v).await;
    }
    let rss = rss_bytes(server.pid());
    server.stop();
    receiver.stop();
    Ok((v?, rss? as f64))
}

/// Rows of one measure for both systems, and their ratio (tocsin ÷ AM).
struct Pair {
    tocsin: Row,
    am: Row,
    ratio: Row,
}

impl Pair {
    fn new(label: &str, unit: Unit) -> Self {
        Self {
            tocsin: Row::new(format!("{label}: tocsin"), unit),
            am: Row::new(format!("{label}: Alertmanager"), unit),
            ratio: Row::new(format!("{label}: tocsin ÷ Alertmanager"), Unit::Ratio),
        }
    }

    fn push(&mut self, system: System, run: Run) {
        match system {
            System::Tocsin => self.tocsin.runs.push(run),
            System::Alertmanager => self.am.runs.push(run),
        }
    }

    /// Adds the ratio of the latest run pair.
    fn close_run(&mut self) {
        if let (Some(t), Some(a)) = (self.tocsin.runs.last(), self.am.runs.last()) {
            self.ratio.runs.push(Run {
                value: t.value / a.value,
                cpu: None,
                note: None,
            });
        }
    }

    fn rows(&self) -> [Row; 3] {
        [self.tocsin.clone(), self.am.clone(), self.ratio.clone()]
    }
}

/// Runs figure 7.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new("7. Side by side with Alertmanager");
    let version = crate::servers::alertmanager_version()?;
    let wait = ctx.pick(15, 5);
    // 100k alerts only at batch 100: Alertmanager takes minutes to accept
    // them 10 at a time (100k aggregation groups, each on a 1 s timer).
    let workloads: Vec<(u64, u64)> = vec![(1, 10_000), (10, 10_000), (100, 10_000), (100, 100_000)];
    let mut accept_rows = Vec::new();
    let mut rss_rows = Vec::new();
    let mut accept_pairs = Vec::new();
    let mut rss_pairs = Vec::new();
    for &(batch, n) in &workloads {
        let label = format!("batch {batch}, {}k alerts", n / 1000);
        let mut accept = Pair::new(&label, Unit::PerSec);
        let mut rss = Pair::new(&label, Unit::Bytes);
        for r in 0..ctx.runs {
            for system in [System::Tocsin, System::Alertmanager] {
                let (v, bytes) = one(
                    ctx,
                    system,
                    args![
                        "--batch",
                        batch,
                        "--conns",
                        4,
                        "--total",
                        n,
                        "--wait-secs",
                        wait
                    ],
                )
                .await?;
                let rate = num(&v, "sent.events") / num(&v, "sent.elapsed_s");
                let delivered = num(&v, "receiver.count");
                let note = errors_note(&v);
                progress(
                    FIG,
                    format!(
                        "{label} run {}/{}: {} {rate:.0} alerts/s accepted, {} delivered, RSS {}",
                        r + 1,
                        ctx.runs,
                        system.name(),
                        delivered,
                        report::fmt(bytes, Unit::Bytes)
                    ),
                );
                accept.push(
                    system,
                    Run {
                        value: rate,
                        cpu: cpu_at(&v, "cpu_send"),
                        note,
                    },
                );
                rss.push(
                    system,
                    Run {
                        value: bytes,
                        cpu: None,
                        note: (delivered < n as f64)
                            .then(|| format!("{:.0} % delivered", delivered * 100.0 / n as f64)),
                    },
                );
            }
            accept.close_run();
            rss.close_run();
        }
        accept_rows.extend(accept.rows());
        rss_rows.extend(rss.rows());
        accept_pairs.push(((batch, n), accept));
        rss_pairs.push(((batch, n), rss));
    }

    // Delivery latency under a steady background load.
    let bg_rate = 1_000.0;
    let secs = ctx.pick(10.0, 3.0);
    let mut p50 = Pair::new("p50", Unit::Micros);
    let mut p99 = Pair::new("p99", Unit::Micros);
    let mut outbox = Row::new(
        "tocsin: of which notification created → webhook answered (mean)",
        Unit::Micros,
    );
    for r in 0..ctx.runs {
        for system in [System::Tocsin, System::Alertmanager] {
            let (v, _) = one(
                ctx,
                system,
                args![
                    "--batch",
                    1,
                    "--conns",
                    4,
                    "--rate",
                    bg_rate,
                    "--duration",
                    secs,
                    "--wait-secs",
                    30
                ],
            )
            .await?;
            let mut notes = Vec::new();
            if !v["receiver"]["complete"].as_bool().unwrap_or(false) {
                notes.push(format!(
                    "{} of {} delivered",
                    num(&v, "receiver.count"),
                    num(&v, "receiver.expected")
                ));
            }
            if let Some(e) = errors_note(&v) {
                notes.push(e);
            }
            let note = (!notes.is_empty()).then(|| notes.join(", "));
            let cpu = cpu_at(&v, "cpu");
            progress(
                FIG,
                format!(
                    "latency run {}/{}: {} p50 {:.0} µs, p99 {:.0} µs",
                    r + 1,
                    ctx.runs,
                    system.name(),
                    num(&v, "receiver.latency.p50_us"),
                    num(&v, "receiver.latency.p99_us")
                ),
            );
            p50.push(
                system,
                Run {
                    value: num(&v, "receiver.latency.p50_us"),
                    cpu: cpu.clone(),
                    note: note.clone(),
                },
            );
            p99.push(
                system,
                Run {
                    value: num(&v, "receiver.latency.p99_us"),
                    cpu,
                    note,
                },
            );
            if system == System::Tocsin {
                outbox.runs.push(Run {
                    value: num(&v, "outbox_mean_us"),
                    cpu: None,
                    note: None,
                });
            }
        }
        p50.close_run();
        p99.close_run();
    }

    // 10k alerts firing at once.
    let burst_n = 10_000u64;
    let mut burst = Pair::new("10k at once", Unit::PerSec);
    for r in 0..ctx.runs {
        for system in [System::Tocsin, System::Alertmanager] {
            let (v, _) = one(
                ctx,
                system,
                args![
                    "--batch",
                    100,
                    "--conns",
                    4,
                    "--total",
                    burst_n,
                    "--wait-secs",
                    120
                ],
            )
            .await?;
            let complete = v["receiver"]["complete"].as_bool().unwrap_or(false);
            let rate = num(&v, "receiver.rate");
            progress(
                FIG,
                format!(
                    "burst run {}/{}: {} {rate:.0} notifications/s",
                    r + 1,
                    ctx.runs,
                    system.name()
                ),
            );
            burst.push(
                system,
                Run {
                    value: if complete { rate } else { f64::NAN },
                    cpu: cpu_at(&v, "cpu"),
                    note: (!complete).then(|| {
                        format!(
                            "only {} of {burst_n} delivered within 120 s",
                            num(&v, "receiver.count")
                        )
                    }),
                },
            );
        }
        burst.close_run();
    }

    section.para(format!(
        "{version}, clustering off (`--cluster.listen-address=`), storage in a temp dir; one \
         route `group_by: [alertname]`, `group_wait: 0s`, `group_interval: 1s`, \
         `repeat_interval: 1h`, one webhook receiver. tocsin: one rule with no `[match]` clause \
         (matches every alert), the `threshold` plugin with `key = [\"error-code\"]` (the \
         alertname) and threshold 1, a `webhook` channel. Both deliver to the same minimal \
         receiver. Alerts are {} bytes of JSON (labels alertname, severity, service, \
         instance; a summary annotation; startsAt), each with its own alertname, posted over 4 \
         keep-alive connections. Runs alternate tocsin, Alertmanager on fresh instances. \
         Ratios are tocsin ÷ Alertmanager per run pair: above 1 is better for throughput, below \
         1 is better for latency and memory. CPU columns: server / generator + receiver / \
         other.",
        crate::payload::Alerts { distinct: 1 }
            .alert(0, 0, "2026-01-01T00:00:00.000Z")
            .len()
    ));
    section.para(
        "**Accepted alerts/s**: alerts in `200` answers ÷ time to post them all (closed-loop; \
         both systems deliver the notifications meanwhile); CPU measured while posting.",
    );
    section.para(report::table(
        "workload",
        &accept_rows,
        "server / gen / other",
    ));
    section.para(format!(
        "**RSS after each workload**: read once the receiver had every notification or {wait} s \
         after the last alert was accepted, whichever came first (the note gives the share \
         delivered by then)."
    ));
    section.para(report::table("workload", &rss_rows, "server / gen / other"));
    section.para(format!(
        "**Delivery latency under load**: a new alert every millisecond ({}) for {secs} s, \
         one per request, open-loop; latency from the alert's send time (in its summary) to \
         the webhook's arrival at the receiver, first 10 % left out.",
        report::fmt(bg_rate, Unit::PerSec)
    ));
    let mut lat_rows = Vec::new();
    lat_rows.extend(p50.rows());
    lat_rows.extend(p99.rows());
    lat_rows.push(outbox);
    section.para(report::table("latency", &lat_rows, "server / gen / other"));
    section.para(
        "The last row is tocsin's own `tocsin_delivery_latency_seconds` histogram (mean; \
         millisecond clock): notification created in the pipeline → webhook answered, i.e. \
         the durable writes (state log group commit, SQLite outbox), the dispatcher and the \
         POST. Alertmanager keeps alerts in memory and notifies without writing to disk first.",
    );
    section.para(format!(
        "**10k alerts firing at once**: {burst_n} alerts (distinct alertnames) posted in \
         batches of 100; notifications/s = {burst_n} ÷ (the last new alert's arrival − the \
         first POST), at the receiver."
    ));
    section.para(report::table(
        "burst",
        &burst.rows(),
        "server / gen / other",
    ));

    let ratio_of = |pairs: &[((u64, u64), Pair)], key: (u64, u64)| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, p)| p.ratio.median())
    };
    let fmt_ratio = |v: Option<f64>| {
        v.map(|v| report::fmt(v, Unit::Ratio))
            .unwrap_or_else(|| "n/a".into())
    };
    for (key, goal) in [
        ((1, 10_000), 4.0),
        ((10, 10_000), 5.0),
        ((100, 10_000), 5.0),
    ] {
        let r = ratio_of(&accept_pairs, key);
        section.targets.push(Target::new(
            format!(
                "accepted alerts/s vs Alertmanager, batch {}, {}k alerts",
                key.0,
                key.1 / 1000
            ),
            format!("≥ {goal:.0}×"),
            fmt_ratio(r),
            r.map(|v| v >= goal),
        ));
    }
    let r = ratio_of(&accept_pairs, (100, 100_000));
    let m = ratio_of(&rss_pairs, (100, 100_000));
    section.targets.push(Target::new(
        "100k distinct alerts (batch 100): accepted/s and RSS vs Alertmanager",
        "≥ 8× at ≤ ¼ of its RSS",
        format!("{}, RSS {}", fmt_ratio(r), fmt_ratio(m)),
        match (r, m) {
            (Some(r), Some(m)) => Some(r >= 8.0 && m <= 0.25),
            _ => None,
        },
    ));
    Ok(section)
}
