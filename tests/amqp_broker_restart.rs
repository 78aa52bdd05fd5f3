//! A RabbitMQ restart mid-stream is survived: tocsin reports the lost
//! connection on `/readyz`, reconnects with backoff, and processes every
//! event published before and after. Its own test binary, because it
//! restarts the shared broker.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tocsin_tests::rabbit::Rabbit;
use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(120);

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn a_broker_restart_mid_stream_is_survived() -> anyhow::Result<()> {
    const HALF: usize = 300;
    let rabbit = Rabbit::new("restart").await?;
    let mut env = rabbit.env();
    env.push(("TOCSIN_ENGINE_WORKERS".into(), "1".into()));
    let rule = r#"
[match]
codes = ["RESTART_TEST"]
[aggregate]
plugin = "threshold"
config = { threshold = 1, window = "1h", samples = 0 }
[[channels]]
plugin = "log"
"#;
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "log"],
        default_rules: false,
        rules: vec![("restart.toml".into(), rule.into())],
        env,
        ..Setup::default()
    })
    .await?;
    let ready = || async { Ok(t.http.get(t.url("/readyz")).send().await?.status() == 200) };
    wait_for("consuming", WAIT, ready).await?;
    let event = |i: usize| json!({"errorCode": "RESTART_TEST", "severity": "high", "serviceName": "s", "message": "m", "eventId": format!("r-{i}")});
    for i in 0..HALF {
        rabbit.publish_event(&event(i)).await?;
    }
    wait_for("the first half processed", WAIT, || async {
        Ok(
            t.metric("tocsin_events_matched_total", &[("rule", "restart")])
                .await?
                >= HALF as f64,
        )
    })
    .await?;

    rabbitmqctl(&["stop_app"])?;
    let stopped = wait_for("/readyz to report the lost connection", WAIT, || async {
        let r = t.http.get(t.url("/readyz")).send().await?;
        let body: serde_json::Value = r.json().await?;
        Ok(body["ready"] == false && body["reasons"].to_string().contains("RabbitMQ"))
    })
    .await;
    rabbitmqctl(&["start_app"])?;
    stopped?;
    wait_for("tocsin reconnected", WAIT, ready).await?;
    assert_eq!(t.get_json("/healthz").await?["status"], "ok", "no crash");

    let publisher = Rabbit::new("restart-pub").await?.into_names_of(&rabbit);
    for i in HALF..2 * HALF {
        publisher.publish_event(&event(i)).await?;
    }
    wait_for("every event processed once", WAIT, || async {
        Ok(
            t.metric("tocsin_events_matched_total", &[("rule", "restart")])
                .await?
                >= (2 * HALF) as f64,
        )
    })
    .await?;
    assert_eq!(
        t.metric("tocsin_events_matched_total", &[("rule", "restart")])
            .await?,
        (2 * HALF) as f64
    );
    // Matching is counted before the batch's notifications are committed.
    let count = || async {
        anyhow::Ok(
            t.get_json("/v1/notifications?rule=restart&limit=10000")
                .await?["notifications"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0),
        )
    };
    wait_for("every notification recorded", WAIT, || async {
        Ok(count().await? >= 2 * HALF)
    })
    .await?;
    assert_eq!(count().await?, 2 * HALF, "one per event, none twice");
    publisher.cleanup().await;
    Ok(())
}
