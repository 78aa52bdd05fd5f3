//! Several tocsin instances on one RabbitMQ queue, sharing state in Redis:
//! counting stays exact (each alert fires once), every alert is emailed
//! once, and a WebSocket client connected to one instance sees every
//! instance's notifications. The exactness runs are repeated beside a CPU
//! hog (a spinning process per core): a busy machine makes Redis answer
//! late, which must not cost an alert. They run one at a time, so the
//! quiet runs are quiet.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tocsin_tests::load::CpuHog;
use tocsin_tests::peers::SmtpSink;
use tocsin_tests::rabbit::Rabbit;
use tocsin_tests::{wait_for, wait_progressing, Progress, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(180);
const EVENTS: usize = 30_000;
const KEYS: usize = 300;
const ALERTS: usize = EVENTS / 10;

/// Three instances each, on two cores: one run at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RULE: &str = r#"
[match]
codes = ["CLUSTER_TEST"]
[aggregate]
plugin = "threshold"
config = { threshold = 10, window = "1h", samples = 1 }
[[channels]]
plugin = "websocket"
grants = { websocket = true }
[[channels]]
plugin = "email"
grants = { email = ["default"] }
"#;

/// Three instances; `smtp_ports[i]` overrides instance i's SMTP port.
async fn cluster(
    rabbit: &Rabbit,
    smtp: &SmtpSink,
    prefix: &str,
    smtp_ports: [Option<u16>; 3],
    extra: &[(&str, &str)],
) -> anyhow::Result<Vec<Tocsin>> {
    let mut out = Vec::new();
    for port in smtp_ports {
        let mut env = rabbit.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env.extend([
            (
                "TOCSIN_REDIS_URL".to_string(),
                "redis://127.0.0.1:6379".to_string(),
            ),
            ("TOCSIN_REDIS_PREFIX".to_string(), prefix.to_string()),
            ("TOCSIN_SMTP_HOST".to_string(), "127.0.0.1".to_string()),
            (
                "TOCSIN_SMTP_PORT".to_string(),
                port.unwrap_or(smtp.port).to_string(),
            ),
            ("TOCSIN_SMTP_TO".to_string(), "ops@example.com".to_string()),
            ("TOCSIN_ENGINE_WORKERS".to_string(), "1".to_string()),
            ("TOCSIN_AMQP_PREFETCH".to_string(), "200".to_string()),
        ]);
        if port.is_some() {
            // Its mail server refuses: keep every email pending (never
            // dead-lettered), however long a busy machine keeps it alive
            // before the kill, so all of them are left to the takeover.
            env.push(("TOCSIN_DELIVERY_ATTEMPTS".to_string(), "1000".to_string()));
        }
        let t = Tocsin::start(Setup {
            plugins: vec!["threshold", "websocket", "email"],
            default_rules: false,
            rules: vec![("cluster.toml".into(), RULE.into())],
            env,
            ..Setup::default()
        })
        .await?;
        out.push(t);
    }
    for t in &out {
        wait_for("instance consuming", WAIT, || async {
            Ok(t.http.get(t.url("/readyz")).send().await?.status() == 200)
        })
        .await?;
    }
    Ok(out)
}

fn event(i: usize) -> Value {
    json!({
        "errorCode": "CLUSTER_TEST", "severity": "high", "serviceName": format!("svc-{}", i % KEYS),
        "message": format!("event {i}"), "eventId": format!("c-{i}"),
    })
}

async fn notifications(t: &Tocsin) -> anyhow::Result<Vec<Value>> {
    Ok(t.get_json("/v1/notifications?rule=cluster&limit=100000")
        .await?["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Every instance's alerts, checked for exactness: ALERTS in all, KEYS
/// keys with ALERTS / KEYS each, every one counting 10 events.
async fn assert_exact(instances: &[Tocsin]) -> anyhow::Result<()> {
    // History is per instance, and a takeover records the taken
    // notifications at the taker too (same id): count each id once.
    let mut seen = std::collections::HashSet::new();
    let mut all = Vec::new();
    for t in instances {
        for n in notifications(t).await? {
            if seen.insert(n["id"].as_str().unwrap_or("").to_string()) {
                all.push(n);
            }
        }
    }
    assert_eq!(
        all.len(),
        ALERTS,
        "exactly one alert per 10 events across the cluster"
    );
    assert!(all.iter().all(|n| n["count"] == 10));
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for n in &all {
        *per_key
            .entry(n["key"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    assert_eq!(per_key.len(), KEYS);
    assert!(per_key.values().all(|&c| c == ALERTS / KEYS), "{per_key:?}");
    Ok(())
}

/// Checks the WebSocket frames: ALERTS in all, each key ALERTS / KEYS
/// times, each counting 10 events (a lost or doubled alert shows here).
fn assert_exact_frames(frames: &[Value]) {
    assert_eq!(frames.len(), ALERTS);
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for f in frames {
        assert_eq!(f["rule"], "cluster");
        assert_eq!(f["count"], 10, "{f}");
        *per_key
            .entry(f["key"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    assert_eq!(per_key.len(), KEYS);
    assert!(per_key.values().all(|&c| c == ALERTS / KEYS), "{per_key:?}");
}

/// What happens to the third instance mid-run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    /// Nothing: three instances throughout.
    None,
    /// SIGKILLed and never restarted.
    Killed,
    /// SIGSTOPped until its deliveries were taken over, then resumed: an
    /// instance that was only late.
    Stopped,
}

async fn run(victim: Victim, busy: bool) -> anyhow::Result<()> {
    let kill_one = victim == Victim::Killed;
    let _one = ONE_AT_A_TIME.lock().await;
    let mut hog = if busy { Some(CpuHog::start()?) } else { None };
    // Deadlines are for hangs, not speed: a busy machine (or a Redis that
    // stalled long enough to be called an outage) only makes it slower.
    let wait = WAIT * 5;
    let rabbit = Rabbit::new(if kill_one { "cluster-kill" } else { "cluster" }).await?;
    let smtp = SmtpSink::start(None).await?;
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    // The victim's mail server refuses connections, so every email it
    // owns is still pending when it dies: the survivors must take them
    // over, or the emails never arrive.
    let refused = if victim != Victim::None {
        Some(
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        )
    } else {
        None
    };
    // A stopped instance is declared dead after 3 s of silence.
    let extra: &[(&str, &str)] = match victim {
        Victim::Stopped => &[("TOCSIN_REDIS_HEARTBEAT_TTL_MS", "3000")],
        _ => &[],
    };
    let mut instances = cluster(&rabbit, &smtp, &prefix, [None, None, refused], extra).await?;
    let mut ws = instances[0].ws("").await?;

    let publisher = rabbit.another().await?;
    let sender = tokio::spawn(async move {
        for i in 0..EVENTS {
            publisher.publish_event(&event(i)).await?;
        }
        anyhow::Ok(())
    });
    if kill_one {
        // Killed mid-run and never restarted: its unacknowledged events go
        // to the others, and its unsettled deliveries are taken over.
        let victim = &instances[2];
        wait_for("the victim processing", wait, || async {
            Ok(victim.metric("tocsin_events_processed_total", &[]).await? >= 2000.0)
        })
        .await?;
        instances[2].kill()?;
    }
    // The late instance's own mail server, started once it is resumed.
    let mut late_smtp = None;
    if victim == Victim::Stopped {
        let late = &instances[2];
        wait_for("the late instance processing", wait, || async {
            Ok(late.metric("tocsin_events_processed_total", &[]).await? >= 2000.0)
        })
        .await?;
        late.signal("STOP")?;
        wait_for("its deliveries taken over", wait, || async {
            let mut taken = 0.0;
            for t in &instances[..2] {
                taken += t.metric("tocsin_deliveries_taken_over_total", &[]).await?;
            }
            Ok(taken >= 1.0)
        })
        .await?;
        late_smtp = Some(SmtpSink::start_on(refused.unwrap_or_default(), None).await?);
        late.signal("CONT")?;
    }
    let live = if kill_one {
        &instances[..2]
    } else {
        &instances[..]
    };
    // The WebSocket on instance 0 sees every instance's notifications. A
    // busy machine is slow, not wrong: the wait fails when nothing moves
    // (no frame and no event processed) for a minute, or at the deadline.
    let mut frames = Vec::new();
    let deadline = std::time::Instant::now() + wait;
    let stall = Duration::from_secs(60);
    let (mut moved_at, mut processed_before) = (std::time::Instant::now(), 0.0);
    while frames.len() < ALERTS {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "only {} WebSocket frames within {wait:?}",
            frames.len()
        );
        match ws.next(Duration::from_secs(5)).await {
            Ok(n) => {
                frames.push(n);
                moved_at = std::time::Instant::now();
            }
            Err(e) => {
                let mut state = Vec::new();
                let mut processed = 0.0;
                for t in live {
                    let p = t
                        .metric("tocsin_events_processed_total", &[])
                        .await
                        .unwrap_or(-1.0);
                    processed += p;
                    let alerts = notifications(t).await.map(|n| n.len()).unwrap_or(0);
                    state.push(format!("processed {p} alerts {alerts}"));
                }
                if processed > processed_before {
                    processed_before = processed;
                    moved_at = std::time::Instant::now();
                }
                anyhow::ensure!(
                    moved_at.elapsed() < stall,
                    "{e}; nothing moved for {stall:?} after {} frames; instances: {state:?}; queue ready {:?}",
                    frames.len(),
                    rabbit.ready(&rabbit.queue).await.ok()
                );
            }
        }
    }
    sender.await??;
    wait_for("the queue drained", wait, || async {
        Ok(rabbit.ready(&rabbit.queue).await? == 0)
    })
    .await?;
    assert_exact_frames(&frames);
    // No extra frame arrives for a settled stream.
    assert!(
        ws.next(Duration::from_millis(500)).await.is_err(),
        "more frames than alerts"
    );
    if !kill_one {
        assert_exact(&instances).await?;
    }
    let unique = || -> anyhow::Result<(usize, usize)> {
        let mut mails = smtp.messages()?;
        if let Some(late) = &late_smtp {
            mails.extend(late.messages()?);
        }
        let ids: std::collections::HashSet<String> = mails
            .iter()
            .map(|m| m["message_id"].as_str().unwrap_or("").to_string())
            .collect();
        Ok((ids.len(), mails.len()))
    };
    // As long as emails keep arriving (how long depends on the machine's
    // load); a stall of `wait` fails.
    wait_progressing("one email per alert", wait, || async {
        let (distinct, raw) = unique()?;
        let done = distinct >= ALERTS;
        // Where the missing emails are, should this stall: each live
        // instance's pending deliveries and its hand-over counters.
        let mut held = Vec::new();
        if !done {
            for (i, t) in instances.iter().enumerate() {
                let pending = match t.get_json("/v1/deliveries?status=pending").await {
                    Ok(v) => v["deliveries"].as_array().map_or(0, Vec::len).to_string(),
                    Err(_) => "down".into(),
                };
                let mut counters = Vec::new();
                for m in [
                    "tocsin_deliveries_taken_over_total",
                    "tocsin_deliveries_fenced_total",
                    "tocsin_deliveries_refenced_total",
                ] {
                    let v = t.metric(m, &[]).await.unwrap_or(-1.0);
                    counters.push(format!(
                        "{}={v}",
                        m.trim_start_matches("tocsin_deliveries_")
                    ));
                }
                held.push(format!("#{i}: pending {pending} {}", counters.join(" ")));
            }
        }
        Ok(Progress {
            done,
            figure: raw as f64,
            state: format!(
                "{distinct} distinct of {raw} emails, {ALERTS} expected; {}",
                held.join("; ")
            ),
        })
    })
    .await?;
    let (distinct, raw) = unique()?;
    assert_eq!(distinct, ALERTS, "each alert emailed (one delivery each)");
    assert_eq!(raw, ALERTS, "each alert emailed once");
    if victim == Victim::Stopped {
        // What was taken from it, it did not send (the fence), and nothing
        // it still had is left pending.
        let late = &instances[2];
        wait_for("the late instance's deliveries settled", wait, || async {
            Ok(
                late.get_json("/v1/deliveries?status=pending").await?["deliveries"]
                    .as_array()
                    .is_some_and(Vec::is_empty),
            )
        })
        .await?;
        let (distinct, raw) = unique()?;
        assert_eq!((distinct, raw), (ALERTS, ALERTS), "no email sent twice");
        assert!(
            late.metric("tocsin_deliveries_fenced_total", &[]).await? >= 1.0,
            "the late instance held back what was taken over"
        );
    }
    if kill_one {
        let mut taken = 0.0;
        for t in live {
            taken += t.metric("tocsin_deliveries_taken_over_total", &[]).await?;
        }
        assert!(
            taken >= 1.0,
            "the victim's pending emails were taken over ({taken})"
        );
    }
    if let Some(hog) = &mut hog {
        assert!(hog.running(), "the CPU hog ran for the whole test");
    }
    // For the record: slow replies waited for, and outages (reconciliations).
    let (mut slow, mut outages) = (0.0, 0.0);
    for t in live {
        slow += t.metric("tocsin_redis_slow_replies_total", &[]).await?;
        outages += t.metric("tocsin_state_reconciled_total", &[]).await?;
    }
    let (distinct, raw) = unique()?;
    let figures = format!(
        "cluster figures ({victim:?}, busy: {busy}): alerts expected {ALERTS}, frames {}, emails {distinct} distinct / {raw} sent, slow Redis replies {slow}, journal entries replayed {outages}",
        frames.len()
    );
    eprintln!("{figures}");
    tocsin_tests::record_figure(&figures);
    rabbit.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn three_instances_fire_each_alert_exactly_once() -> anyhow::Result<()> {
    run(Victim::None, false).await
}

#[tokio::test]
async fn three_instances_exact_on_a_busy_machine() -> anyhow::Result<()> {
    run(Victim::None, true).await
}

/// One of three instances is SIGKILLed mid-run and stays dead: its batch
/// in flight commits nothing (see `state::txn`), RabbitMQ redelivers its
/// events to the others, and its pending deliveries (all of them: its mail
/// server refuses) are taken over once its heartbeat lapses. A delivery a
/// dying instance had sent but not settled would be sent again with the
/// same Message-ID (at-least-once, see `cluster.rs`); this test keeps the
/// victim from sending any, so the count is exact.
#[tokio::test]
async fn exact_with_one_instance_killed_mid_run() -> anyhow::Result<()> {
    run(Victim::Killed, false).await
}

#[tokio::test]
async fn exact_with_one_instance_killed_on_a_busy_machine() -> anyhow::Result<()> {
    run(Victim::Killed, true).await
}

/// One of three instances is SIGSTOPped (a machine so busy that its
/// heartbeat lapsed) until the others took its deliveries over, then
/// resumed: counting stays exact, and it does not send what was taken from
/// it, so every email arrives once.
#[tokio::test]
async fn exact_with_one_instance_late_beyond_its_heartbeat() -> anyhow::Result<()> {
    run(Victim::Stopped, false).await
}

#[tokio::test]
async fn a_trace_follows_one_event_from_publish_to_delivered_email() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let rabbit = Rabbit::new("trace").await?;
    let smtp = SmtpSink::start(None).await?;
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    let mut env = rabbit.env();
    env.extend([
        (
            "TOCSIN_REDIS_URL".to_string(),
            "redis://127.0.0.1:6379".to_string(),
        ),
        ("TOCSIN_REDIS_PREFIX".to_string(), prefix),
        ("TOCSIN_SMTP_HOST".to_string(), "127.0.0.1".to_string()),
        ("TOCSIN_SMTP_PORT".to_string(), smtp.port.to_string()),
        ("TOCSIN_SMTP_TO".to_string(), "ops@example.com".to_string()),
    ]);
    let t = Tocsin::start(Setup {
        env,
        ..Setup::default()
    })
    .await?;
    wait_for("consuming", WAIT, || async {
        Ok(t.http.get(t.url("/readyz")).send().await?.status() == 200)
    })
    .await?;
    let id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    rabbit
        .publish_event(&json!({
            "eventId": id, "errorCode": "DATABASE_CONNECTION_FAILED", "severity": "critical",
            "serviceName": "billing", "message": "pg-main refused the connection",
        }))
        .await?;
    wait_for("the email", WAIT, || async {
        Ok(smtp.messages()?.len() == 1)
    })
    .await?;
    let path = format!("/v1/events/{id}/trace");
    wait_for("the trace showing the delivered email", WAIT, || async {
        let trace = t.get_json(&path).await?;
        let delivered = trace["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["deliveries"].as_array().cloned().unwrap_or_default())
            .any(|d| d["kind"] == "email" && d["status"] == "delivered");
        Ok(delivered)
    })
    .await?;
    let trace = t.get_json(&path).await?;
    let stages: Vec<&str> = trace["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    assert_eq!(
        stages,
        vec!["received", "matched", "aggregated", "notified"],
        "{trace}"
    );
    let steps = trace["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps[0]["detail"], "from amqp");
    assert_eq!(steps[1]["rule"], "database-connection-failed");
    let email = steps[3]["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|d| d["kind"] == "email")
        .unwrap_or_default();
    assert_eq!(email["attempts"], 1);
    let unknown = t.http.get(t.url("/v1/events/nope/trace")).send().await?;
    assert_eq!(unknown.status().as_u16(), 404);
    rabbit.cleanup().await;
    Ok(())
}
