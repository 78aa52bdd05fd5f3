//! Escalation: an alert that stays active and unacknowledged reaches its
//! rule's step 1 (the `pager` webhook) and then step 2 (the `phone`
//! webhook) after their delays — across a restart between the two — and
//! each step is delivered once; an acknowledged alert of the same rule
//! never escalates. The escalation channels are not called by the first
//! notification.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use serde_json::{json, Value};
use tocsin_tests::peers::WebhookReceiver;
use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(30);

fn rule(pager: &WebhookReceiver, phone: &WebhookReceiver) -> String {
    format!(
        r#"
[match]
codes = ["DISK_FULL"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
[[channels]]
plugin = "websocket"
grants = {{ websocket = true }}
[[channels]]
name = "pager"
plugin = "webhook"
config = {{ url = "{}" }}
grants = {{ http = ["127.0.0.1:{}"] }}
[[channels]]
name = "phone"
plugin = "webhook"
config = {{ url = "{}" }}
grants = {{ http = ["127.0.0.1:{}"] }}
[[escalation]]
after = "3s"
channels = ["pager"]
[[escalation]]
after = "10s"
channels = ["phone"]
"#,
        pager.url(),
        pager.port,
        phone.url(),
        phone.port
    )
}

/// The services a receiver was called for, with the escalation step.
fn calls(hook: &WebhookReceiver) -> Vec<(String, String, String)> {
    hook.received()
        .iter()
        .map(|r| {
            let label = |n: &str| r.body["labels"][n].as_str().unwrap_or_default().to_string();
            (
                label("service"),
                label("escalation"),
                r.idempotency_key.clone(),
            )
        })
        .collect()
}

async fn alert_of(t: &Tocsin, service: &str) -> Result<Value> {
    let alerts = t.get_json("/api/v2/alerts").await?;
    alerts
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["service"] == service)
        .cloned()
        .ok_or_else(|| anyhow!("no active alert for {service}: {alerts}"))
}

#[tokio::test]
async fn unacknowledged_alerts_escalate_step_by_step_acknowledged_ones_never() -> Result<()> {
    let pager = WebhookReceiver::start(&[], 200).await?;
    let phone = WebhookReceiver::start(&[], 200).await?;
    let mut t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket", "webhook"],
        default_rules: false,
        rules: vec![("disks.toml".into(), rule(&pager, &phone))],
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_ENGINE_ESCALATION_TICK_MS".into(), "200".into()),
        ],
        ..Setup::default()
    })
    .await?;
    let status = t.rule_status("disks").await?;
    ensure!(status["channels"] == json!(["websocket"]), "{status}");
    let mut ws = t.ws("").await?;
    t.send("DISK_FULL", "a", 1, "disk full").await?;
    t.send("DISK_FULL", "b", 1, "disk full").await?;
    for _ in 0..2 {
        let n = ws.next(WAIT).await?;
        ensure!(
            n["labels"]["escalation"].is_null(),
            "the first notification: {n}"
        );
    }
    let b = alert_of(&t, "b").await?;
    let fp = b["fingerprint"].as_str().unwrap_or_default().to_string();
    let r = t
        .http
        .post(t.url(&format!("/v1/alerts/{fp}/ack")))
        .json(&json!({"by": "ann", "comment": "mine"}))
        .send()
        .await?;
    ensure!(r.status() == 200, "ack: {}", r.status());

    // Step 1 for `a` only.
    wait_for("step 1 on the pager", WAIT, || async {
        Ok(!pager.received().is_empty())
    })
    .await?;
    let a = alert_of(&t, "a").await?;
    ensure!(a["escalated"] == 1, "{a}");
    ensure!(phone.received().is_empty(), "step 2 came too early");

    // Restart before step 2: it still comes, once.
    t.stop()?;
    t.spawn().await?;
    wait_for("step 2 on the phone", WAIT, || async {
        Ok(!phone.received().is_empty())
    })
    .await?;
    wait_for("a's alert escalated twice", WAIT, || async {
        Ok(alert_of(&t, "a").await?["escalated"] == 2)
    })
    .await?;
    // Both steps were due for `b` long before `a`'s second: never fired.
    let b = alert_of(&t, "b").await?;
    ensure!(b["escalated"] == 0, "{b}");
    let (p, f) = (calls(&pager), calls(&phone));
    ensure!(
        p.iter().all(|c| c.0 == "a" && c.1 == "1" && c.2 == p[0].2),
        "the pager: one delivery of a's step 1: {p:?}"
    );
    ensure!(
        f.iter().all(|c| c.0 == "a" && c.1 == "2" && c.2 == f[0].2),
        "the phone: one delivery of a's step 2: {f:?}"
    );
    let n = t
        .metric(
            "tocsin_alerts_escalated_total",
            &[("rule", "disks"), ("step", "2")],
        )
        .await?;
    ensure!(
        n == 1.0,
        "tocsin_alerts_escalated_total step 2 after the restart: {n}"
    );
    Ok(())
}

/// Three instances sharing Redis, all looking for due steps every 50 ms,
/// one SIGKILLed between the steps: each step is delivered once.
#[tokio::test]
async fn each_step_fires_once_across_instances_sharing_redis() -> Result<()> {
    let pager = WebhookReceiver::start(&[], 200).await?;
    let phone = WebhookReceiver::start(&[], 200).await?;
    let text = rule(&pager, &phone).replace("\"10s\"", "\"5s\"");
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    let setup = || Setup {
        plugins: vec!["threshold", "websocket", "webhook"],
        default_rules: false,
        rules: vec![("disks.toml".into(), text.clone())],
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_ENGINE_ESCALATION_TICK_MS".into(), "50".into()),
            ("TOCSIN_REDIS_URL".into(), "redis://127.0.0.1:6379".into()),
            ("TOCSIN_REDIS_PREFIX".into(), prefix.clone()),
        ],
        ..Setup::default()
    };
    let first = Tocsin::start(setup()).await?;
    let mut second = Tocsin::start(setup()).await?;
    let third = Tocsin::start(setup()).await?;
    let mut ws = first.ws("").await?;
    first.send("DISK_FULL", "a", 1, "disk full").await?;
    ws.next(WAIT).await?;
    wait_for("step 1 on the pager", WAIT, || async {
        Ok(!pager.received().is_empty())
    })
    .await?;
    second.kill()?;
    wait_for("step 2 on the phone", WAIT, || async {
        Ok(!phone.received().is_empty())
    })
    .await?;
    wait_for("a's alert escalated twice", WAIT, || async {
        Ok(alert_of(&third, "a").await?["escalated"] == 2)
    })
    .await?;
    // Once `escalated` is 2 no instance can fire a step again (each fire
    // re-reads it under the rule's lock); a delivery may be retried after
    // the SIGKILL, under the same idempotency key, never a second one.
    for (hook, step) in [(&pager, "1"), (&phone, "2")] {
        let got = calls(hook);
        let keys: std::collections::BTreeSet<&String> = got.iter().map(|c| &c.2).collect();
        ensure!(
            keys.len() == 1 && got.iter().all(|c| c.0 == "a" && c.1 == step),
            "step {step} delivered once: {got:?}"
        );
    }
    Ok(())
}
