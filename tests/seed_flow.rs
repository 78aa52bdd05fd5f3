//! The seed's behaviour, end to end over HTTP and WebSocket, with the
//! default rules and the shipped plugins.

use std::time::Duration;

use tocsin_tests::{event, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn three_device_start_failures_give_one_notification_per_service() -> anyhow::Result<()> {
    let t = Tocsin::start(Setup::default()).await?;
    let mut ws = t.ws("").await?;

    t.send(
        "DEVICE_START_FAILED",
        "device-service",
        3,
        "container exited",
    )
    .await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(n["type"], "alert");
    assert_eq!(n["rule"], "device-start-failed");
    assert_eq!(n["count"], 3);
    assert_eq!(n["severity"], "high");
    assert_eq!(n["labels"]["service"], "device-service");
    assert_eq!(n["samples"].as_array().map(Vec::len), Some(3), "{n}");

    // Two more from the same service: below the threshold again, so nothing.
    // A marker (DATABASE_CONNECTION_FAILED alerts at 1) sent afterwards must
    // be the next frame: one worker processes in order.
    t.send("DEVICE_START_FAILED", "device-service", 2, "again")
        .await?;
    t.send("DATABASE_CONNECTION_FAILED", "billing", 1, "marker")
        .await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(
        n["rule"], "database-connection-failed",
        "no alert expected for 2 more events, got {n}"
    );

    // A different service counts on its own: its third event alerts even
    // though device-service holds a count of 2.
    t.send("DEVICE_START_FAILED", "other-service", 3, "elsewhere")
        .await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(n["rule"], "device-start-failed");
    assert_eq!(n["labels"]["service"], "other-service");
    assert_eq!(n["count"], 3);

    // And device-service's pending 2 complete with one more.
    t.send("DEVICE_START_FAILED", "device-service", 1, "third")
        .await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["service"], "device-service");
    assert_eq!(n["count"], 3);
    Ok(())
}

#[tokio::test]
async fn websocket_clients_can_filter_by_severity_and_rule() -> anyhow::Result<()> {
    let t = Tocsin::start(Setup::default()).await?;
    let mut critical = t.ws("?severity=critical").await?;
    let mut by_rule = t.ws("?rule=account-locked").await?;
    t.send("DEVICE_START_FAILED", "d", 3, "high one").await?;
    let events: Vec<_> = (0..10)
        .map(|i| event("ACCOUNT_LOCKED", "medium", "auth", &format!("u{i}")))
        .collect();
    t.post_events(&serde_json::Value::Array(events)).await?;
    t.post_events(&event(
        "DATABASE_CONNECTION_FAILED",
        "critical",
        "db",
        "down",
    ))
    .await?;
    let n = critical.next(WAIT).await?;
    assert_eq!(n["rule"], "database-connection-failed");
    let n = by_rule.next(WAIT).await?;
    assert_eq!(n["rule"], "account-locked");
    assert_eq!(n["count"], 10);
    Ok(())
}

#[tokio::test]
async fn counts_survive_a_restart() -> anyhow::Result<()> {
    let mut t = Tocsin::start(Setup::default()).await?;
    t.send("DEVICE_STOP_FAILED", "device-service", 2, "before restart")
        .await?;
    t.wait_processed(2.0).await?;
    t.stop()?;
    t.spawn().await?;
    let mut ws = t.ws("").await?;
    t.send("DEVICE_STOP_FAILED", "device-service", 1, "after restart")
        .await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(n["rule"], "device-stop-failed");
    assert_eq!(n["count"], 3, "the two events before the restart were kept");
    Ok(())
}
