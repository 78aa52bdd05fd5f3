//! The threshold aggregator's semantics: reset after an alert, window
//! expiry, the quiet period, key fields. Each test runs its own engine with
//! a rule written for it; one worker keeps processing in order, and a marker
//! rule (threshold 1) proves "nothing happened" without guessing delays.

use std::time::{Duration, Instant};

use tocsin_tests::{Setup, Tocsin, Ws};

const WAIT: Duration = Duration::from_secs(10);

fn rule(code: &str, config: &str) -> String {
    format!(
        r#"
[match]
codes = ["{code}"]
[aggregate]
plugin = "threshold"
config = {{ {config} }}
[[channels]]
plugin = "websocket"
grants = {{ websocket = true }}
"#
    )
}

async fn engine(config: &str) -> anyhow::Result<(Tocsin, Ws)> {
    let setup = Setup {
        default_rules: false,
        rules: vec![
            ("under-test.toml".into(), rule("UNDER_TEST", config)),
            (
                "marker.toml".into(),
                rule("MARKER", r#"threshold = 1, window = "1h""#),
            ),
        ],
        ..Setup::default()
    };
    let t = Tocsin::start(setup).await?;
    let ws = t.ws("").await?;
    Ok((t, ws))
}

/// Asserts the next frame is the marker's, i.e. nothing alerted before it.
async fn assert_quiet(t: &Tocsin, ws: &mut Ws, why: &str) -> anyhow::Result<()> {
    t.send("MARKER", "m", 1, "marker").await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(n["rule"], "marker", "{why}: expected no alert, got {n}");
    Ok(())
}

#[tokio::test]
async fn counter_resets_after_each_alert() -> anyhow::Result<()> {
    let (t, mut ws) = engine(r#"threshold = 3, window = "1h""#).await?;
    t.send("UNDER_TEST", "s", 7, "e").await?;
    for _ in 0..2 {
        let n = ws.next(WAIT).await?;
        assert_eq!(
            (n["rule"].as_str(), n["count"].as_u64()),
            (Some("under-test"), Some(3))
        );
    }
    assert_quiet(&t, &mut ws, "7 events = 2 alerts + 1 pending").await?;
    t.send("UNDER_TEST", "s", 2, "e").await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(
        n["count"], 3,
        "the pending event counts toward the third alert"
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_window_starts_over() -> anyhow::Result<()> {
    let (t, mut ws) = engine(r#"threshold = 3, window = "700ms""#).await?;
    let started = Instant::now();
    t.send("UNDER_TEST", "s", 2, "early").await?;
    t.wait_processed(2.0).await?;
    // Let the window run out (this wait is the behaviour under test).
    tokio::time::sleep(
        Duration::from_millis(700).saturating_sub(started.elapsed()) + Duration::from_millis(100),
    )
    .await;
    t.send("UNDER_TEST", "s", 1, "late").await?;
    assert_quiet(
        &t,
        &mut ws,
        "2 events in an expired window + 1 in a new one",
    )
    .await?;
    t.send("UNDER_TEST", "s", 2, "late").await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(n["rule"], "under-test");
    assert_eq!(n["count"], 3);
    let samples: Vec<&str> = n["samples"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    assert!(
        samples.iter().all(|s| s.starts_with("late")),
        "samples from the expired window leaked: {samples:?}"
    );
    Ok(())
}

#[tokio::test]
async fn quiet_period_suppresses_repeat_alerts() -> anyhow::Result<()> {
    let (t, mut ws) = engine(r#"threshold = 2, window = "1h", quiet = "1h""#).await?;
    t.send("UNDER_TEST", "s", 2, "first").await?;
    assert_eq!(ws.next(WAIT).await?["rule"], "under-test");
    t.send("UNDER_TEST", "s", 4, "repeat").await?;
    assert_quiet(&t, &mut ws, "quiet period").await?;
    // Another key is not affected by this key's quiet period.
    t.send("UNDER_TEST", "other", 2, "other key").await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["service"], "other");
    Ok(())
}

#[tokio::test]
async fn key_fields_are_configurable() -> anyhow::Result<()> {
    let (t, mut ws) = engine(r#"threshold = 3, window = "1h", key = ["error-code"]"#).await?;
    t.send("UNDER_TEST", "a", 1, "e").await?;
    t.send("UNDER_TEST", "b", 1, "e").await?;
    t.send("UNDER_TEST", "c", 1, "e").await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(
        n["count"], 3,
        "services share one key when the key is the code alone"
    );
    assert_eq!(n["key"], "UNDER_TEST");
    Ok(())
}
