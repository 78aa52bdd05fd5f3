//! A Redis outage mid-run (10 s, `CLIENT PAUSE`: Redis answers nobody):
//! tocsin keeps processing on local state, reports itself degraded, and
//! reconciles when Redis returns — the behaviour the README documents:
//! what degraded batches counted is replayed onto the shared counters, so
//! a threshold crossed by the outage's events together with the events
//! before it fires at reconciliation (no alert is missing), and an alert
//! already notified during the outage is not notified again. Its own test
//! binary, because it pauses the shared Redis; run quiet and beside a CPU
//! hog, one at a time.

use std::process::Command;
use std::time::Duration;

use tocsin_tests::load::CpuHog;
use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(60);

/// The tests pause the one Redis: never two at once.
static PAUSING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn outage_and_reconcile() -> anyhow::Result<()> {
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
            // The pause is 10 s: call it an outage after 2 s of silence.
            ("TOCSIN_REDIS_OUTAGE_AFTER_MS".into(), "2000".into()),
        ],
        ..Setup::default()
    })
    .await?;
    let mut ws = t.ws("").await?;
    t.send("OUTAGE_TEST", "a", 5, "before").await?;
    t.send("OUTAGE_TEST", "c", 5, "before").await?;
    t.wait_processed(10.0).await?;

    let paused = Command::new("redis-cli")
        .args(["-p", "6379", "CLIENT", "PAUSE", "10000", "ALL"])
        .output()?;
    anyhow::ensure!(
        paused.status.success(),
        "redis-cli CLIENT PAUSE: {}",
        String::from_utf8_lossy(&paused.stderr)
    );

    // Processing continues: 4 more for key a, 5 more for key c, and 10 for
    // key b alert locally.
    t.send("OUTAGE_TEST", "a", 4, "during").await?;
    t.send("OUTAGE_TEST", "b", 10, "during").await?;
    t.send("OUTAGE_TEST", "c", 5, "during").await?;
    t.wait_processed(29.0).await?;
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

    // Redis comes back: the instance replays the outage and leaves degraded mode.
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
    assert_eq!(t.metric("tocsin_state_degraded", &[]).await?, 0.0);

    // Key c: 5 counted in Redis before + 5 locally during = 10. No event
    // follows, yet the alert is not missing: the replay fired it.
    let n = ws.next(WAIT).await?;
    assert_eq!(
        (n["labels"]["service"].as_str(), n["count"].as_u64()),
        (Some("c"), Some(10)),
        "the alert completed by the outage's events fired at reconciliation: {n}"
    );

    // Key a: 5 before + 4 during = 9 shared: one more fires.
    t.send("OUTAGE_TEST", "a", 1, "after").await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(
        (n["labels"]["service"].as_str(), n["count"].as_u64()),
        (Some("a"), Some(10)),
        "outage counts were merged (b was not notified a second time): {n}"
    );
    // Nothing else: b's replayed alert was suppressed, c fired once.
    assert!(
        ws.next(Duration::from_secs(1)).await.is_err(),
        "an extra notification after reconciliation"
    );
    let alerts: serde_json::Value = t.get_json("/v1/notifications?rule=outage").await?;
    let mut keys: Vec<String> = alerts["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["key"].as_str().map(str::to_string))
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 3, "one alert each for a, b and c: {alerts}");
    Ok(())
}

#[tokio::test]
async fn processing_continues_through_a_redis_outage_and_reconciles() -> anyhow::Result<()> {
    let _one = PAUSING.lock().await;
    outage_and_reconcile().await
}

#[tokio::test]
async fn a_redis_outage_on_a_busy_machine_loses_no_alert() -> anyhow::Result<()> {
    let _one = PAUSING.lock().await;
    let mut hog = CpuHog::start()?;
    outage_and_reconcile().await?;
    assert!(hog.running(), "the CPU hog ran for the whole test");
    Ok(())
}

/// The next notification on `ws`, as (service, count).
async fn next_alert(ws: &mut tocsin_tests::Ws) -> anyhow::Result<(String, u64)> {
    let n = ws.next(WAIT).await?;
    Ok((
        n["labels"]["service"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        n["count"].as_u64().unwrap_or_default(),
    ))
}

/// Waits until `t` is no longer degraded (its batches commit to Redis).
async fn back_on_redis(t: &Tocsin) -> anyhow::Result<()> {
    wait_for("back on Redis", WAIT, || async {
        let ready: serde_json::Value = t.http.get(t.url("/readyz")).send().await?.json().await?;
        Ok(ready["degraded"].as_array().is_some_and(Vec::is_empty))
    })
    .await
}

/// A commit whose answer is lost on the wire (Redis applied it) goes on as
/// committed; a commit lost before Redis saw it is redone. Either way each
/// event is counted once: the marker the commit writes settles the
/// unknown outcome (`tocsin_state_commits_unanswered_total{outcome}`).
/// The loss is made by a relay in front of the real Redis
/// ([`tocsin_tests::redis_proxy`]), on the commit's own request.
#[tokio::test]
async fn an_unanswered_commit_is_counted_once() -> anyhow::Result<()> {
    use tocsin_tests::redis_proxy::{Loss, RedisProxy};
    let _one = PAUSING.lock().await;
    let proxy = RedisProxy::start("127.0.0.1:6379").await?;
    let rule = r#"
[match]
codes = ["UNANSWERED"]
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
        rules: vec![("unanswered.toml".into(), rule.into())],
        env: vec![
            ("TOCSIN_REDIS_URL".into(), proxy.url.clone()),
            (
                "TOCSIN_REDIS_PREFIX".into(),
                format!("t-{}:", uuid::Uuid::new_v4().simple()),
            ),
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_REDIS_OUTAGE_AFTER_MS".into(), "1000".into()),
        ],
        ..Setup::default()
    })
    .await?;
    let mut ws = t.ws("").await?;
    let outcome = |o: &'static str| {
        let t = &t;
        async move {
            t.metric("tocsin_state_commits_unanswered_total", &[("outcome", o)])
                .await
        }
    };

    // Key a: 5 counted, then 5 whose commit applies but is not answered.
    t.send("UNANSWERED", "a", 5, "before").await?;
    proxy.arm(Loss::Answer);
    t.send("UNANSWERED", "a", 5, "answer lost").await?;
    assert_eq!(proxy.fired(), 1, "the relay lost the commit's answer");
    assert_eq!(next_alert(&mut ws).await?, ("a".into(), 10));
    assert_eq!(outcome("applied").await?, 1.0, "resolved as applied");

    // Key b: 10 events whose commit never reaches Redis: redone. (The
    // lost answer made the instance degraded until Redis answered again.)
    back_on_redis(&t).await?;
    proxy.arm(Loss::Request);
    t.send("UNANSWERED", "b", 10, "request lost").await?;
    assert_eq!(proxy.fired(), 2, "the relay lost the commit's request");
    assert_eq!(next_alert(&mut ws).await?, ("b".into(), 10));
    assert_eq!(
        outcome("not_applied").await?,
        1.0,
        "resolved as not applied"
    );

    // Nothing was counted twice: 9 more for a and for b alert nothing (if
    // a lost batch had counted twice they would), as the barrier key c's
    // alert arrives first; the 10th alerts.
    back_on_redis(&t).await?;
    t.send("UNANSWERED", "a", 9, "after").await?;
    t.send("UNANSWERED", "b", 9, "after").await?;
    t.send("UNANSWERED", "c", 10, "barrier").await?;
    assert_eq!(
        next_alert(&mut ws).await?,
        ("c".into(), 10),
        "a or b alerted early: a lost commit was counted twice"
    );
    t.send("UNANSWERED", "a", 1, "tenth").await?;
    assert_eq!(next_alert(&mut ws).await?, ("a".into(), 10));
    t.send("UNANSWERED", "b", 1, "tenth").await?;
    assert_eq!(next_alert(&mut ws).await?, ("b".into(), 10));
    assert_eq!(proxy.fired(), 2);
    Ok(())
}
