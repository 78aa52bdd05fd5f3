//! Figure 6: resident memory, idle and with 100k live aggregation keys.
//!
//! The keys come from 100k events with distinct serviceNames through a
//! rule whose threshold is never reached, so every key keeps its window
//! (and a sample) in the state store while the RSS is read.

use std::time::Duration;

use anyhow::Result;

use crate::args;
use crate::cpu::rss_bytes;
use crate::fig_http::errors_note;
use crate::http::Conn;
use crate::report::{self, cpu_at, num, progress, Row, Run, Section, Target, Unit};
use crate::servers::{loadgen, Ctx, Tocsin, TocsinSetup};

const FIG: &str = "6 memory";
const KEYS: u64 = 100_000;
/// The target's limit: 64 MiB.
const LIMIT: f64 = 64.0 * 1024.0 * 1024.0;

/// Runs figure 6.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new("6. Memory (RSS)");
    let setup = TocsinSetup {
        default_rules: true,
        rules: vec![(
            "bench-keys.toml".into(),
            report::rule(
                Some("BENCH_KEYS"),
                1_000_000,
                "1h",
                "\"error-code\", \"service-name\"",
                report::WS_CHANNEL,
            ),
        )],
        env: Vec::new(),
        listen: None,
    };
    let mut idle = Row::new("idle: 11 default rules + 6 plugins", Unit::Bytes);
    let mut keyed = Row::new(
        format!("{}k live aggregation keys", KEYS / 1000),
        Unit::Bytes,
    );
    let mut state_keys = Row::new("state entries (`tocsin_state_keys`)", Unit::Count);
    for r in 0..ctx.runs {
        let t = Tocsin::start(ctx, &setup).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle.runs.push(Run {
            value: rss_bytes(t.pid())? as f64,
            cpu: None,
            note: None,
        });
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
                KEYS,
                "--code",
                "BENCH_KEYS",
                "--services",
                KEYS,
                "--wait-processed",
                "--cpu",
                format!("server={}", t.pid())
            ],
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = rss_bytes(t.pid())? as f64;
        let keys = Conn::connect(&t.addr)
            .await?
            .metric("tocsin_state_keys", &[])
            .await?;
        t.stop();
        let mut note = errors_note(&v);
        if !v["processed"]["complete"].as_bool().unwrap_or(false) {
            note = Some(format!(
                "only {} of {KEYS} processed",
                num(&v, "processed.count")
            ));
        }
        progress(
            FIG,
            format!(
                "run {}/{}: idle {}, with keys {} ({keys} state entries)",
                r + 1,
                ctx.runs,
                report::fmt(idle.runs[r].value, Unit::Bytes),
                report::fmt(rss, Unit::Bytes)
            ),
        );
        keyed.runs.push(Run {
            value: rss,
            cpu: cpu_at(&v, "cpu"),
            note,
        });
        state_keys.runs.push(Run {
            value: keys,
            cpu: None,
            note: None,
        });
    }
    section.para(format!(
        "`VmRSS` of the tocsin process (`/proc/<pid>/status`). Idle: 1 s after `/healthz` \
         answered, with the 11 default rules, one benchmark rule and the 6 bundled plugins. \
         Then {KEYS} events with distinct serviceNames (batches of 100, 4 connections) through \
         a rule with threshold 1 000 000 per hour, so each key stays live; read 1 s after \
         all were processed. The CPU split is that of posting the events."
    ));
    section.para(report::table(
        "state",
        &[idle, keyed.clone(), state_keys],
        "tocsin / gen / other",
    ));
    let m = keyed.median();
    section.targets.push(Target::new(
        "RSS with 100k live keys",
        "≤ 64 MiB",
        m.map(|v| report::fmt(v, Unit::Bytes))
            .unwrap_or_else(|| "n/a".into()),
        m.map(|v| v <= LIMIT),
    ));
    Ok(section)
}
