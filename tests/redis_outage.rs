//! A Redis outage mid-run (10 s, `CLIENT PAUSE`: Redis answers nobody):
//! tocsin keeps processing on local state, reports itself degraded, and
//! reconciles when Redis returns — the behaviour the README documents:
//! counts made during the outage are added to the shared counters, and
//! their threshold is checked on the key's next event. Its own test binary,
//! because it pauses the shared Redis.

use std::process::Command;
use std::time::Duration;

use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn processing_continues_through_a_redis_outage_and_reconciles() -> anyhow::Result<()> {
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    let rule = r#"
[match]
codes = ["OUTAGE_TEST"]
[aggregate]
plugin = "threshold"
config = { threshold = 10, window = "1h" }
[[channels]]
plugin = "websocket"
grants = { websocket = true }
"#;
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        rules: vec![("outage.toml".into(), rule.into())],
        env: vec![
            ("TOCSIN_REDIS_URL".into(), "redis://127.0.0.1:6379".into()),
            ("TOCSIN_REDIS_PREFIX".into(), prefix),
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
        ],
    })
    .await?;
    let mut ws = t.ws("").await?;
    t.send("OUTAGE_TEST", "a", 5, "before").await?;
    t.wait_processed(5.0).await?;

    let paused = Command::new("redis-cli")
        .args(["-p", "6379", "CLIENT", "PAUSE", "10000", "ALL"])
        .output()?;
    anyhow::ensure!(
        paused.status.success(),
        "redis-cli CLIENT PAUSE: {}",
        String::from_utf8_lossy(&paused.stderr)
    );

    // Processing continues: 4 more for key a, and 10 for key b alert locally.
    t.send("OUTAGE_TEST", "a", 4, "during").await?;
    t.send("OUTAGE_TEST", "b", 10, "during").await?;
    t.wait_processed(19.0).await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(
        (n["labels"]["service"].as_str(), n["count"].as_u64()),
        (Some("b"), Some(10)),
        "alerting went on during the outage"
    );
    let ready: serde_json::Value = t.http.get(t.url("/readyz")).send().await?.json().await?;
    assert_eq!(ready["ready"], true, "still ready: {ready}");
    assert!(
        ready["degraded"].to_string().contains("Redis unavailable"),
        "{ready}"
    );
    assert_eq!(t.metric("tocsin_state_degraded", &[]).await?, 1.0);

    // Redis comes back: the instance reconciles and leaves degraded mode.
    wait_for(
        "reconciliation after the outage",
        Duration::from_secs(30),
        || async {
            let ready: serde_json::Value =
                t.http.get(t.url("/readyz")).send().await?.json().await?;
            Ok(ready["degraded"].as_array().is_some_and(Vec::is_empty))
        },
    )
    .await?;
    assert!(t.metric("tocsin_state_reconciled_total", &[]).await? >= 1.0);

    // 5 counted in Redis before + 4 locally during = 9 shared: one more fires.
    t.send("OUTAGE_TEST", "a", 1, "after").await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(
        (n["labels"]["service"].as_str(), n["count"].as_u64()),
        (Some("a"), Some(10)),
        "outage counts were merged"
    );
    Ok(())
}
