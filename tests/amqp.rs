//! The RabbitMQ source against the real broker: every event processed
//! exactly once in effect, even across SIGKILL; malformed messages and
//! plugin failures dead-lettered with their reason.

use std::time::Duration;

use serde_json::{json, Value};
use tocsin_tests::rabbit::{header, Rabbit};
use tocsin_tests::{event, wait_for, wait_progressing, Progress, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(60);

const RULE: &str = r#"
[match]
codes = ["AMQP_TEST"]
[aggregate]
plugin = "threshold"
config = { threshold = 10, window = "1h", samples = 1 }
[[channels]]
plugin = "log"
"#;

async fn engine(
    rabbit: &Rabbit,
    extra_rules: Vec<(String, String)>,
    extra_env: Vec<(&str, &str)>,
) -> anyhow::Result<Tocsin> {
    let mut env = rabbit.env();
    env.push(("TOCSIN_ENGINE_WORKERS".into(), "2".into()));
    for (k, v) in extra_env {
        env.push((k.into(), v.into()));
    }
    let mut rules = vec![("amqp.toml".to_string(), RULE.to_string())];
    rules.extend(extra_rules);
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "log", "panic"],
        default_rules: false,
        rules,
        env,
        ..Setup::default()
    })
    .await?;
    wait_until_consuming(&t).await?;
    Ok(t)
}

async fn wait_until_consuming(t: &Tocsin) -> anyhow::Result<()> {
    wait_for("tocsin consuming from RabbitMQ (/readyz)", WAIT, || async {
        let r = t.http.get(t.url("/readyz")).send().await?;
        Ok(r.status() == 200)
    })
    .await
}

async fn notifications(t: &Tocsin) -> anyhow::Result<Vec<Value>> {
    Ok(t.get_json("/v1/notifications?rule=amqp&limit=100000")
        .await?["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn seed_event(i: usize, services: usize) -> Value {
    json!({
        "errorCode": "AMQP_TEST", "severity": "high", "serviceName": format!("svc-{}", i % services),
        "message": format!("event {i}"), "timestamp": "2026-11-21T00:00:00Z", "eventId": format!("evt-{i}"),
    })
}

#[tokio::test]
async fn every_published_event_is_processed_exactly_once() -> anyhow::Result<()> {
    const N: usize = 2000;
    const SERVICES: usize = 20;
    let rabbit = Rabbit::new("once").await?;
    let t = engine(&rabbit, vec![], vec![]).await?;
    for i in 0..N {
        rabbit.publish_event(&seed_event(i, SERVICES)).await?;
    }
    // One event published twice (a producer retry) is counted once.
    rabbit.publish_event(&seed_event(0, SERVICES)).await?;
    wait_for("every event processed", WAIT, || async {
        Ok(
            t.metric("tocsin_events_received_total", &[("source", "amqp")])
                .await?
                >= (N + 1) as f64
                && rabbit.ready(&rabbit.queue).await? == 0,
        )
    })
    .await?;
    wait_for("all alerts recorded", WAIT, || async {
        Ok(notifications(&t).await?.len() >= N / 10)
    })
    .await?;
    t.wait_processed((N + 1) as f64).await?;
    let n = notifications(&t).await?;
    assert_eq!(n.len(), N / 10, "threshold 10 over {N} events");
    assert!(n.iter().all(|x| x["count"] == 10));
    assert_eq!(
        t.metric("tocsin_events_matched_total", &[("rule", "amqp")])
            .await?,
        N as f64
    );
    assert_eq!(
        t.metric("tocsin_events_duplicate_total", &[("rule", "amqp")])
            .await?,
        1.0
    );
    rabbit.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn sigkill_mid_stream_loses_nothing_and_counts_nothing_twice() -> anyhow::Result<()> {
    const N: usize = 6000;
    const SERVICES: usize = 30;
    let rabbit = Rabbit::new("kill").await?;
    let mut t = engine(&rabbit, vec![], vec![]).await?;
    // Publish from an independent connection while the engine consumes.
    let publisher = rabbit.another().await?;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            publisher.publish_event(&seed_event(i, SERVICES)).await?;
        }
        anyhow::Ok(())
    });
    wait_for("some events processed before the kill", WAIT, || async {
        Ok(t.metric("tocsin_events_processed_total", &[]).await? >= 1000.0)
    })
    .await?;
    t.kill()?;
    t.spawn().await?;
    wait_until_consuming(&t).await?;
    sender.await??;
    // As long as it takes on this machine, while events are processed.
    wait_progressing("the queue drained after the restart", WAIT, || async {
        let ready = rabbit.ready(&rabbit.queue).await?;
        let alerts = notifications(&t).await?.len();
        let processed = t.metric("tocsin_events_processed_total", &[]).await?;
        Ok(Progress {
            done: ready == 0 && alerts >= N / 10,
            figure: processed + alerts as f64 - f64::from(ready),
            state: format!("{ready} ready in the queue, {alerts} alerts, {processed} processed since the restart"),
        })
    })
    .await?;
    let n = notifications(&t).await?;
    assert_eq!(n.len(), N / 10, "exactly N/10 alerts across the kill");
    assert!(
        n.iter().all(|x| x["count"] == 10),
        "every alert counts 10 events"
    );
    let mut per_service = std::collections::BTreeMap::new();
    for x in &n {
        *per_service
            .entry(x["key"].as_str().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(per_service.len(), SERVICES);
    assert!(
        per_service.values().all(|&c| c == N / SERVICES / 10),
        "{per_service:?}"
    );
    rabbit.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_with_their_reason() -> anyhow::Result<()> {
    let rabbit = Rabbit::new("bad").await?;
    let t = engine(&rabbit, vec![], vec![]).await?;
    rabbit.publish("system.error.x", b"{not json").await?;
    rabbit
        .publish_event(&json!({"errorCode": "AMQP_TEST", "message": "no severity or service"}))
        .await?;
    rabbit
        .publish_event(&event("AMQP_TEST", "high", "svc", "a good one"))
        .await?;
    let dead = rabbit.dead_letters(2, WAIT).await?;
    let reasons: Vec<String> = dead
        .iter()
        .map(|(h, _)| header(h, "x-tocsin-reason"))
        .collect();
    assert_eq!(reasons, vec!["malformed", "malformed"]);
    assert!(
        header(&dead[0].0, "x-tocsin-error").contains("not valid JSON"),
        "{:?}",
        dead[0].0
    );
    let second = header(&dead[1].0, "x-tocsin-error");
    assert!(
        second.contains("severity") && second.contains("serviceName"),
        "{second}"
    );
    assert_eq!(dead[0].1, b"{not json");
    assert_eq!(header(&dead[0].0, "x-tocsin-routing-key"), "system.error.x");
    wait_for("the good event processed", WAIT, || async {
        Ok(t.metric("tocsin_events_matched_total", &[("rule", "amqp")])
            .await?
            == 1.0)
    })
    .await?;
    assert_eq!(
        t.metric("tocsin_events_rejected_total", &[("source", "amqp")])
            .await?,
        2.0
    );
    assert_eq!(
        rabbit.ready(&rabbit.queue).await?,
        0,
        "not requeued in a loop"
    );
    rabbit.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_plugin_failure_is_retried_then_dead_lettered_with_the_last_error() -> anyhow::Result<()>
{
    let rabbit = Rabbit::new("trap").await?;
    let panic_rule = r#"
[match]
codes = ["PANIC_TEST"]
[aggregate]
plugin = "panic"
[[channels]]
plugin = "log"
"#;
    let t = engine(
        &rabbit,
        vec![("panics.toml".into(), panic_rule.into())],
        vec![
            ("TOCSIN_AMQP_MAX_RETRIES", "2"),
            ("TOCSIN_AMQP_RETRY_DELAY_MS", "200"),
        ],
    )
    .await?;
    rabbit
        .publish_event(&event("PANIC_TEST", "high", "svc", "panic please"))
        .await?;
    let dead = rabbit.dead_letters(1, WAIT).await?;
    assert_eq!(header(&dead[0].0, "x-tocsin-reason"), "processing-failed");
    let error = header(&dead[0].0, "x-tocsin-error");
    assert!(
        error.contains("panics") && error.contains("trapped"),
        "{error}"
    );
    assert_eq!(
        t.metric("tocsin_amqp_retries_total", &[]).await?,
        2.0,
        "two redeliveries, then dead"
    );
    assert_eq!(
        t.metric("tocsin_events_failed_total", &[("rule", "panics")])
            .await?,
        3.0
    );
    rabbit.cleanup().await;
    Ok(())
}
