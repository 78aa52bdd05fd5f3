//! Several tocsin instances on one RabbitMQ queue, sharing state in Redis:
//! counting stays exact (each alert fires once), every alert is emailed
//! once, and a WebSocket client connected to one instance sees every
//! instance's notifications.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tocsin_tests::peers::SmtpSink;
use tocsin_tests::rabbit::Rabbit;
use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(180);
const EVENTS: usize = 30_000;
const KEYS: usize = 300;
const ALERTS: usize = EVENTS / 10;

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
) -> anyhow::Result<Vec<Tocsin>> {
    let mut out = Vec::new();
    for port in smtp_ports {
        let mut env = rabbit.env();
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
        let t = Tocsin::start(Setup {
            plugins: vec!["threshold", "websocket", "email"],
            default_rules: false,
            rules: vec![("cluster.toml".into(), RULE.into())],
            env,
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
    let mut all = Vec::new();
    for t in instances {
        all.extend(notifications(t).await?);
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

async fn run(kill_one: bool) -> anyhow::Result<()> {
    let rabbit = Rabbit::new(if kill_one { "cluster-kill" } else { "cluster" }).await?;
    let smtp = SmtpSink::start(None).await?;
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    // The victim's mail server refuses connections, so every email it
    // owns is still pending when it dies: the survivors must take them
    // over, or the emails never arrive.
    let refused = if kill_one {
        Some(
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        )
    } else {
        None
    };
    let mut instances = cluster(&rabbit, &smtp, &prefix, [None, None, refused]).await?;
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
        wait_for("the victim processing", WAIT, || async {
            Ok(victim.metric("tocsin_events_processed_total", &[]).await? >= 2000.0)
        })
        .await?;
        instances[2].kill()?;
    }
    let live = if kill_one {
        &instances[..2]
    } else {
        &instances[..]
    };
    // The WebSocket on instance 0 sees every instance's notifications.
    let mut frames = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while frames.len() < ALERTS {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "only {} WebSocket frames",
            frames.len()
        );
        match ws.next(Duration::from_secs(30)).await {
            Ok(n) => frames.push(n),
            Err(e) => {
                let mut state = Vec::new();
                for t in live {
                    let processed = t
                        .metric("tocsin_events_processed_total", &[])
                        .await
                        .unwrap_or(-1.0);
                    let alerts = notifications(t).await.map(|n| n.len()).unwrap_or(0);
                    state.push(format!("processed {processed} alerts {alerts}"));
                }
                anyhow::bail!(
                    "{e} after {} frames; instances: {state:?}; queue ready {:?}",
                    frames.len(),
                    rabbit.ready(&rabbit.queue).await.ok()
                );
            }
        }
    }
    sender.await??;
    wait_for("the queue drained", WAIT, || async {
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
        let mails = smtp.messages()?;
        let ids: std::collections::HashSet<String> = mails
            .iter()
            .map(|m| m["message_id"].as_str().unwrap_or("").to_string())
            .collect();
        Ok((ids.len(), mails.len()))
    };
    wait_for("one email per alert", WAIT, || async {
        Ok(unique()?.0 >= ALERTS)
    })
    .await?;
    let (distinct, raw) = unique()?;
    assert_eq!(distinct, ALERTS, "each alert emailed (one delivery each)");
    assert_eq!(raw, ALERTS, "each alert emailed once");
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
    rabbit.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn three_instances_fire_each_alert_exactly_once() -> anyhow::Result<()> {
    run(false).await
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
    run(true).await
}

#[tokio::test]
async fn a_trace_follows_one_event_from_publish_to_delivered_email() -> anyhow::Result<()> {
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
