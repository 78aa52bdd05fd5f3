//! Figure 9: a healthy rule's event → WebSocket frame latency beside
//! hostile rules that keep attacking the host (issue 17).
//!
//! Two configurations, interleaved run by run (A B, then B A, …) so that
//! a neighbour's build hits both alike, each on a fresh tocsin with the
//! same plugins and settings:
//! - *without*: the healthy rule alone;
//! - *with*: the healthy rule beside the rules of `tests/hostile.rs`
//!   (the `hostile` aggregator, the `flood` channel, `spin`, `hog`,
//!   `panic`), and a sender in this process firing their eighteen attacks
//!   in rotation all through the measurement, the way a broken or abusive
//!   rule keeps failing in production.
//!
//! The latency is figure 2's open-loop measurement ([`steady`]) at a rate
//! this machine sustains. That the attacks really ran is shown by the
//! growth of `tocsin_plugin_errors_total` of the hostile plugins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::fig_http::{steady, Steady};
use crate::http::{metric_value, Conn};
use crate::report::{self, num, progress, Row, Run, Section, Target, Unit};
use crate::servers::{free_port, Ctx, Tocsin, TocsinSetup};

const FIG: &str = "9 hostile";
const HEALTHY_CODE: &str = "BENCH_HEALTHY";
/// The healthy rule (its file's stem).
const HEALTHY_RULE: &str = "healthy";
/// Healthy events per second: steady load this two-core machine carries
/// with room to spare, so what moves the tail is the attacks.
const RATE: f64 = 1000.0;
/// One attack every this long (4 per second).
const ATTACK_EVERY: Duration = Duration::from_millis(250);
/// The test plugins the hostile rules run (`tests/plugins/dist`); copied
/// in both configurations, so that only the rules differ.
const HOSTILE_PLUGINS: [&str; 5] = ["hostile", "flood", "spin", "hog", "panic"];
/// Each hostile rule: (file stem, code it matches, aggregator, channel).
const HOSTILE_RULES: [(&str, &str, &str, &str); 6] = [
    ("hostile", "HOSTILE", "hostile", "websocket"),
    ("creep", "CREEP", "hostile", "websocket"),
    ("flood", "FLOOD", "hostile", "flood"),
    ("spin", "SPIN", "spin", "websocket"),
    ("hog", "HOG", "hog", "websocket"),
    ("panic", "PANIC", "panic", "websocket"),
];
/// The attacks of `tests/hostile.rs`, in the order it runs them: (code of
/// the rule that carries it, the event's message naming it).
const ATTACKS: [(&str, &str); 18] = [
    ("HOSTILE", "big-alert"),
    ("HOSTILE", "alert-flood"),
    ("HOSTILE", "big-labels"),
    ("HOSTILE", "many-keys"),
    ("HOSTILE", "big-values"),
    ("HOSTILE", "big-list"),
    ("HOSTILE", "big-key"),
    ("HOSTILE", "big-error"),
    ("HOSTILE", "recurse"),
    ("HOSTILE", "log-flood"),
    ("CREEP", "creep"),
    ("FLOOD", "ws-flood"),
    ("FLOOD", "http-flood"),
    ("FLOOD", "email-flood"),
    ("FLOOD", "big-frame"),
    ("SPIN", "spin"),
    ("HOG", "hog"),
    ("PANIC", "panic"),
];
/// `tocsin_plugin_errors_total`'s kinds (`CallError::kind`).
const ERROR_KINDS: [&str; 6] = [
    "quota",
    "deadline",
    "memory",
    "trap",
    "error",
    "instantiate",
];

/// The rules and settings; `hostile` adds the hostile rules.
fn setup(hostile: bool, smtp_port: u16) -> TocsinSetup {
    let mut rules = vec![(
        format!("{HEALTHY_RULE}.toml"),
        report::rule(
            Some(HEALTHY_CODE),
            1,
            "1m",
            "\"error-code\", \"service-name\"",
            report::WS_CHANNEL,
        ),
    )];
    if hostile {
        for (name, code, aggregate, channel) in HOSTILE_RULES {
            let grants = if channel == "flood" {
                r#"websocket = true, http = ["127.0.0.1:9"], email = ["default"]"#
            } else {
                "websocket = true"
            };
            rules.push((
                format!("{name}.toml"),
                format!(
                    "[match]\ncodes = [\"{code}\"]\n[aggregate]\nplugin = \"{aggregate}\"\n\
                     [[channels]]\nplugin = \"{channel}\"\ngrants = {{ {grants} }}\n"
                ),
            ));
        }
    }
    // Email on (to a port nobody listens on: the email flood is refused
    // whole, nothing is sent) so that `email-flood` reaches its quota;
    // in both configurations, so that only the rules differ.
    let env = [
        ("TOCSIN_ENGINE_WORKERS", "2".to_string()),
        ("TOCSIN_SMTP_HOST", "127.0.0.1".into()),
        ("TOCSIN_SMTP_PORT", smtp_port.to_string()),
        ("TOCSIN_SMTP_FROM", "tocsin@example.com".into()),
        ("TOCSIN_SMTP_TO", "ops@example.com".into()),
    ];
    TocsinSetup {
        default_rules: false,
        rules,
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        listen: None,
    }
}

/// One event for `code` whose message is `message`, with its own id.
fn event(code: &str, message: &str, id: &str) -> String {
    serde_json::json!({
        "eventId": id,
        "errorCode": code,
        "severity": "high",
        "serviceName": "hostile-bench",
        "message": message,
    })
    .to_string()
}

/// Posts one event; fails unless it is answered `202`.
async fn post(conn: &mut Conn, code: &str, message: &str, id: &str) -> Result<()> {
    let (status, body) = conn
        .post_json("/v1/events", event(code, message, id))
        .await?;
    anyhow::ensure!(
        status == 202,
        "{code} {message}: POST /v1/events answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// What the attack sender did.
#[derive(Debug, Default)]
struct Attacked {
    sent: u64,
    /// Attacks not answered `202`, and the first such answer.
    refused: u64,
    first_refusal: Option<String>,
    /// The longest wait for an attack's answer (`202` comes once the
    /// batch that carried it was processed), by attack, slowest first.
    slowest: Vec<(&'static str, Duration)>,
}

/// Posts `attacks` (from [`chosen_attacks`]) in rotation, one every [`ATTACK_EVERY`] (or as soon
/// as the previous was answered, when that took longer), for the `secs`
/// the healthy load is scheduled over, or until `stop` (the load ended
/// early). Not for as long as the load generator takes: when the engine
/// stalls, its requests run late, and attacks fired meanwhile would make
/// the run longer still (`big-list` costs more each time it runs).
/// One attack: (code of the rule that carries it, its event's message).
type Attack = (&'static str, &'static str);

async fn attack(
    addr: String,
    attacks: Vec<Attack>,
    run: usize,
    secs: f64,
    stop: Arc<AtomicBool>,
) -> Result<Attacked> {
    let mut conn = Conn::connect(&addr).await?;
    let mut out = Attacked::default();
    let mut next = tokio::time::Instant::now();
    let until = next + Duration::from_secs_f64(secs);
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < until {
        let (code, attack) = attacks[n % attacks.len()];
        let started = tokio::time::Instant::now();
        if let Err(e) = post(&mut conn, code, attack, &format!("{attack}-{run}-{n}")).await {
            out.refused += 1;
            out.first_refusal.get_or_insert(format!("{e:#}"));
        }
        let took = started.elapsed();
        match out.slowest.iter_mut().find(|(a, _)| *a == attack) {
            Some((_, t)) => *t = (*t).max(took),
            None => out.slowest.push((attack, took)),
        }
        out.sent += 1;
        n += 1;
        next += ATTACK_EVERY;
        tokio::time::sleep_until(next).await;
    }
    out.slowest
        .sort_by_key(|(_, took)| std::cmp::Reverse(*took));
    Ok(out)
}

/// The attacks this run fires: all of [`ATTACKS`], or those that
/// `TOCSIN_BENCH_ATTACKS` names (comma-separated), to find which attack
/// moves the healthy rule's tail.
fn chosen_attacks() -> Result<Vec<Attack>> {
    let Ok(names) = std::env::var("TOCSIN_BENCH_ATTACKS") else {
        return Ok(ATTACKS.to_vec());
    };
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            ATTACKS
                .iter()
                .find(|(_, a)| *a == n)
                .copied()
                .with_context(|| format!("TOCSIN_BENCH_ATTACKS: no attack named `{n}`"))
        })
        .collect::<Result<Vec<_>>>()
        .and_then(|a| {
            anyhow::ensure!(!a.is_empty(), "TOCSIN_BENCH_ATTACKS names no attack");
            Ok(a)
        })
}

/// `tocsin_plugin_errors_total` of the hostile plugins, by kind.
async fn hostile_errors(conn: &mut Conn) -> Result<[f64; ERROR_KINDS.len()]> {
    let (status, body) = conn.get("/metrics").await?;
    anyhow::ensure!(status == 200, "GET /metrics answered {status}");
    let text = String::from_utf8_lossy(&body);
    Ok(ERROR_KINDS.map(|kind| {
        HOSTILE_PLUGINS
            .iter()
            .map(|p| {
                metric_value(
                    &text,
                    "tocsin_plugin_errors_total",
                    &[("plugin", p), ("kind", kind)],
                )
            })
            .sum()
    }))
}

/// The plugin errors `/v1/rules` shows for `rule`, all kinds.
async fn rule_errors(conn: &mut Conn, rule: &str) -> Result<f64> {
    let rules = conn.get_json("/v1/rules").await?;
    let r = rules["rules"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == rule))
        .with_context(|| format!("rule `{rule}` is not in /v1/rules"))?;
    Ok(r["plugin_errors"]["by_kind"]
        .as_object()
        .map(|k| k.values().filter_map(serde_json::Value::as_f64).sum())
        .unwrap_or(0.0))
}

/// One measured run of either configuration.
struct Measured {
    latency: Steady,
    /// With the hostile rules: what the attacker did, and the hostile
    /// plugins' errors counted meanwhile, by kind.
    attacks: Option<(Attacked, [f64; ERROR_KINDS.len()])>,
    /// The healthy rule's plugin errors (must stay 0).
    healthy_errors: f64,
}

async fn measure(
    ctx: &Ctx,
    attacks: &[Attack],
    hostile: bool,
    run: usize,
    secs: f64,
) -> Result<Measured> {
    let t = Tocsin::start_with(ctx, &setup(hostile, free_port()?), &HOSTILE_PLUGINS).await?;
    let mut conn = Conn::connect(&t.addr).await?;
    let mut attacker = None;
    let mut before = [0.0; ERROR_KINDS.len()];
    if hostile {
        // Every hostile rule once with a well-behaved event, as the
        // suite does before its attacks.
        for (_, code, _, _) in HOSTILE_RULES {
            post(&mut conn, code, "behave", &format!("behave-{code}-{run}")).await?;
        }
        // The spin's first offence, before the measurement: it isolates
        // the rule (`pipeline::isolate`), and this one call holds its
        // batch, and the batches waiting on the same log cut, for the
        // whole deadline. What is measured is the steady state after it.
        post(&mut conn, "SPIN", "spin", &format!("spin-first-{run}")).await?;
        before = hostile_errors(&mut conn).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(attack(
            t.addr.clone(),
            attacks.to_vec(),
            run,
            secs,
            stop.clone(),
        ));
        attacker = Some((task, stop));
    }
    let latency = steady(ctx, &t, RATE, secs, HEALTHY_CODE, HEALTHY_RULE).await;
    let mut attacks = None;
    if let Some((task, stop)) = attacker {
        stop.store(true, Ordering::Relaxed);
        let attacked = task.await.context("the attack sender panicked")??;
        // A channel's flood fails in the delivery stage, after the 202.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = hostile_errors(&mut conn).await?;
        let mut grown = [0.0; ERROR_KINDS.len()];
        for (g, (a, b)) in grown.iter_mut().zip(after.iter().zip(before)) {
            *g = a - b;
        }
        attacks = Some((attacked, grown));
    }
    let healthy_errors = rule_errors(&mut conn, HEALTHY_RULE).await?;
    t.stop();
    Ok(Measured {
        latency: latency?,
        attacks,
        healthy_errors,
    })
}

/// Runs figure 9.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new("9. Hostile plugins beside a healthy rule");
    // Checked before any tocsin starts: a misspelt name fails at once.
    let attacks = chosen_attacks()?;
    let secs = ctx.pick(10.0, 3.0);
    let label = ["without hostile rules", "with hostile rules, attacking"];
    // Per configuration: the frame latency, then how late the generator
    // wrote its requests against the schedule (when answers stall, all 4
    // connections wait and events go out late: a stall the latency from
    // the actual send time does not show).
    let mut rows: Vec<[Row; 5]> = label
        .iter()
        .map(|l| {
            [
                "p50",
                "p99",
                "max",
                "generator pacing lag p99",
                "generator pacing lag max",
            ]
            .map(|p| Row::new(format!("{l}: {p}"), Unit::Micros))
        })
        .collect();
    let mut ratio = Row::new("p99 with ÷ without, each pair", Unit::Ratio);
    let mut sent = Row::new("attacks sent during the run", Unit::Count);
    let mut errors = Row::new("hostile plugin errors counted", Unit::Count);
    let mut slowest = Row::new("slowest attack's `202` answer", Unit::Micros);
    let mut achieved = [Vec::new(), Vec::new()];
    for r in 0..ctx.runs {
        // A B, then B A: drift and neighbours hit both alike.
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut p99 = [f64::NAN; 2];
        for hostile in order {
            let i = usize::from(hostile);
            let m = measure(ctx, &attacks, hostile, r, secs).await?;
            let s = &m.latency;
            achieved[i].push(s.achieved);
            p99[i] = num(&s.v, "ws.latency.p99_us");
            for (row, field) in rows[i].iter_mut().zip(["p50_us", "p99_us", "max_us"]) {
                let mut run = s.run(field);
                if m.healthy_errors > 0.0 {
                    let note = format!("{} healthy-rule plugin errors", m.healthy_errors);
                    run.note = Some(match run.note {
                        Some(n) => format!("{n}, {note}"),
                        None => note,
                    });
                }
                row.runs.push(run);
            }
            for (row, field) in rows[i][3..].iter_mut().zip(["p99_us", "max_us"]) {
                row.runs.push(Run {
                    value: num(&s.v, &format!("sent.lag.{field}")),
                    cpu: s.cpu.clone(),
                    note: None,
                });
            }
            let mut attack_note = String::new();
            if let Some((attacked, grown)) = &m.attacks {
                let total: f64 = grown.iter().sum();
                let by_kind: Vec<String> = ERROR_KINDS
                    .iter()
                    .zip(grown)
                    .filter(|(_, n)| **n > 0.0)
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect();
                sent.runs.push(Run {
                    value: attacked.sent as f64,
                    cpu: None,
                    note: attacked
                        .first_refusal
                        .as_ref()
                        .map(|e| format!("{} not answered 202, first: {e}", attacked.refused)),
                });
                if let Some((attack, took)) = attacked.slowest.first() {
                    slowest.runs.push(Run {
                        value: took.as_secs_f64() * 1e6,
                        cpu: None,
                        note: Some(attack.to_string()),
                    });
                }
                errors.runs.push(Run {
                    value: total,
                    cpu: None,
                    note: Some(by_kind.join(", ")),
                });
                let top: Vec<String> = attacked
                    .slowest
                    .iter()
                    .take(4)
                    .map(|(a, t)| format!("{a} {:.0} ms", t.as_secs_f64() * 1000.0))
                    .collect();
                attack_note = format!(
                    ", {} attacks, {total} hostile plugin errors; slowest answers: {}",
                    attacked.sent,
                    top.join(", ")
                );
            }
            progress(
                FIG,
                format!(
                    "run {}/{} {}: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs, {:.0} events/s, \
                     pacing lag max {:.0} µs{attack_note}",
                    r + 1,
                    ctx.runs,
                    label[i],
                    num(&s.v, "ws.latency.p50_us"),
                    p99[i],
                    num(&s.v, "ws.latency.max_us"),
                    s.achieved,
                    num(&s.v, "sent.lag.max_us"),
                ),
            );
        }
        ratio.runs.push(Run {
            value: p99[1] / p99[0],
            cpu: None,
            note: None,
        });
    }

    section.para(format!(
        "A healthy rule (threshold 1: one notification per event) measured as in figure 2: \
         events posted open-loop at {RATE:.0} events/s for {secs} s, one per request over 4 \
         connections, each timed from its send to its frame on `/v1/ws?rule={HEALTHY_RULE}`, the \
         first 10 % left out as warm-up. Fresh tocsin per run, 2 pipeline workers, default \
         sandbox limits and quotas, the same plugins in both configurations (the bundled ones \
         and the hostile test plugins). *Without*: the healthy rule alone. *With*: beside it \
         the six hostile rules of `tests/hostile.rs` (`hostile`, `creep`, `flood`, `spin`, \
         `hog`, `panic`), and all through the run a sender in the benchmark runner posts their \
         {} attacks in rotation, one every {} ms (the next as soon as the previous is \
         answered when that took longer) for the {secs} s the healthy events are scheduled \
         over: state, alert, log and delivery floods refused by the quotas, a 10 MB error, \
         endless recursion, a CPU spin to its deadline, memory to its cap, a panic. Before \
         the measurement the spin attacks once: that first offence isolates its rule (its \
         events then run in a lane of their own, on a private copy of the state, holding no \
         other batch back), and it alone stalls the pipeline for the 200 ms deadline, once \
         per rule and stay. The two configurations alternate (A B, B A, …) so that noise from the \
         rest of the machine hits both alike; *errors counted* is the growth of \
         `tocsin_plugin_errors_total` of the hostile plugins during the run, by kind; an \
         attack's `202` comes once the batch that carried it is processed, so the slowest \
         one says which attack held a pipeline worker longest. The *pacing lag* is how late \
         the generator wrote its requests against the schedule: `202`s wait for the batch's \
         commit, so when the engine stalls all 4 connections wait and events go out late, \
         a delay the latency (from the actual send) does not include; the target counts as \
         met only if the generator also kept its rate. The attack sender's CPU (a few \
         requests per second) is in *other*.",
        ATTACKS.len(),
        ATTACK_EVERY.as_millis(),
    ));
    if attacks.len() < ATTACKS.len() {
        let names: Vec<&str> = attacks.iter().map(|(_, a)| *a).collect();
        section.para(format!(
            "**Only some attacks ran** (`TOCSIN_BENCH_ATTACKS`): {}. The figure is not \
             the full attack rotation.",
            names.join(", ")
        ));
    }
    let mut table_rows: Vec<Row> = rows.iter().flatten().cloned().collect();
    table_rows.extend([ratio, sent, errors, slowest]);
    section.para(report::table(
        "healthy rule, event → frame",
        &table_rows,
        "tocsin / gen / other",
    ));

    let (without, with) = (rows[0][1].median(), rows[1][1].median());
    let rates: Vec<Option<f64>> = achieved
        .iter()
        .map(|a| crate::stats::Spread::of(a).map(|s| s.median))
        .collect();
    let held = rates.iter().all(|r| r.is_some_and(|r| r >= RATE * 0.95));
    let (measured, met) = match (without, with) {
        (Some(a), Some(b)) => {
            let mut m = format!(
                "{} with, {} without: {}",
                report::fmt(b, Unit::Micros),
                report::fmt(a, Unit::Micros),
                report::fmt(b / a, Unit::Ratio)
            );
            if !held {
                let short: Vec<String> = label
                    .iter()
                    .zip(&rates)
                    .zip(&rows)
                    .filter(|((_, r), _)| !r.is_some_and(|r| r >= RATE * 0.95))
                    .map(|((l, r), rows)| {
                        format!(
                            "{l} it sent {} with requests up to {} late",
                            r.map_or("n/a".into(), |r| report::fmt(r, Unit::PerSec)),
                            rows[4]
                                .median()
                                .map_or("n/a".into(), |v| report::fmt(v, Unit::Micros))
                        )
                    })
                    .collect();
                m.push_str(&format!(
                    " — but the generator could not keep {}: {} (see the pacing lag)",
                    report::fmt(RATE, Unit::PerSec),
                    short.join("; ")
                ));
            }
            (m, Some(b / a <= 2.0 && held))
        }
        _ => ("n/a".to_string(), None),
    };
    section.targets.push(Target::new(
        "healthy rule p99 with hostile rules loaded",
        "≤ 2× without",
        measured,
        met,
    ));
    Ok(section)
}
