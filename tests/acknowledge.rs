//! Acknowledgement: "I have it". `POST /v1/alerts/{fingerprint}/ack`
//! with who and why: while the alert stays active, firing again is
//! counted and recorded (history `acknowledgedBy`, the
//! `tocsin_alerts_acknowledged_total` metric) but not notified, across a
//! restart; `DELETE` takes it back and the next firing notifies.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use tocsin_tests::{Setup, Tocsin, Ws};

const WAIT: Duration = Duration::from_secs(20);

/// An alert per event (threshold 1), keyed by code and service.
const RULE: &str = r#"
[match]
codes = ["DISK_FULL"]
[aggregate]
plugin = "threshold"
config = { threshold = 1, window = "1h" }
[[channels]]
plugin = "websocket"
grants = { websocket = true }
"#;

/// Posts one DISK_FULL event of `service` and returns the service of the
/// next notification: a barrier, since frames keep the batches' order.
async fn fire(t: &Tocsin, ws: &mut Ws, service: &str) -> Result<String> {
    t.send("DISK_FULL", service, 1, "disk full").await?;
    t.send("DISK_FULL", "barrier", 1, "after").await?;
    let n = ws.next(WAIT).await?;
    let first = n["labels"]["service"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if first != "barrier" {
        // Notified: the barrier's frame follows.
        let b = ws.next(WAIT).await?;
        ensure!(b["labels"]["service"] == "barrier", "{b}");
    }
    Ok(first)
}

async fn fingerprint(t: &Tocsin, service: &str) -> Result<String> {
    let alerts = t.get_json("/api/v2/alerts").await?;
    alerts
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["service"] == service)
        .and_then(|a| a["fingerprint"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("no active alert for {service}: {alerts}"))
}

async fn ack(t: &Tocsin, fp: &str, body: &Value) -> Result<(u16, Value)> {
    let r = t
        .http
        .post(t.url(&format!("/v1/alerts/{fp}/ack")))
        .json(body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn an_acknowledged_alert_is_recorded_not_notified_until_taken_back() -> Result<()> {
    let mut t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        rules: vec![("disks.toml".into(), RULE.into())],
        ..Setup::default()
    })
    .await?;
    let mut ws = t.ws("").await?;
    ensure!(
        fire(&t, &mut ws, "db").await? == "db",
        "first firing notifies"
    );
    let fp = fingerprint(&t, "db").await?;

    // Refused: nobody said who; an unknown alert.
    let (status, body) = ack(&t, &fp, &json!({"comment": "x"})).await?;
    ensure!(status == 400, "{status} {body}");
    let (status, body) = ack(&t, "0000000000000000", &json!({"by": "ann"})).await?;
    ensure!(status == 404, "{status} {body}");

    let (status, body) = ack(&t, &fp, &json!({"by": "ann", "comment": "on it"})).await?;
    ensure!(status == 200, "{status} {body}");
    ensure!(body["acknowledged"]["by"] == "ann", "{body}");
    ensure!(body["acknowledged"]["comment"] == "on it", "{body}");

    // Fires again: recorded, not notified (the barrier comes first).
    ensure!(
        fire(&t, &mut ws, "db").await? == "barrier",
        "notified while acknowledged"
    );
    let n = t
        .metric("tocsin_alerts_acknowledged_total", &[("rule", "disks")])
        .await?;
    ensure!(n == 1.0, "tocsin_alerts_acknowledged_total {n}");
    let history = t.get_json("/v1/notifications?rule=disks").await?;
    let muted = history["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["alert"]["acknowledgedBy"]["by"] == "ann")
        .count();
    ensure!(
        muted == 1,
        "history shows the acknowledged firing: {history}"
    );

    // Still acknowledged after a restart.
    t.stop()?;
    t.spawn().await?;
    let mut ws = t.ws("").await?;
    let listed = t.get_json("/api/v2/alerts").await?;
    ensure!(listed.to_string().contains("\"by\":\"ann\""), "{listed}");
    ensure!(
        fire(&t, &mut ws, "db").await? == "barrier",
        "notified after a restart"
    );

    // Taken back: the next firing notifies.
    let r = t
        .http
        .delete(t.url(&format!("/v1/alerts/{fp}/ack")))
        .send()
        .await?;
    ensure!(r.status() == 200, "{}", r.status());
    ensure!(
        fire(&t, &mut ws, "db").await? == "db",
        "notifies once taken back"
    );
    Ok(())
}
