//! Grouping: seven Prometheus alerts (through the Alertmanager API) for
//! two services become two webhook notifications, one per service, each
//! listing its alerts; a new alert for one service is one more
//! notification for that group (after its interval), listing all six; once
//! they are resolved, the group says so once and is gone. The history
//! holds the group notifications, not one per alert.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use tocsin_tests::peers::WebhookReceiver;
use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(30);

fn rule(hook: &WebhookReceiver) -> String {
    format!(
        r#"
[match]
codes = ["DB_*"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
[group]
by = ["service"]
wait = "1s"
interval = "2s"
[[channels]]
plugin = "webhook"
config = {{ url = "{}" }}
grants = {{ http = ["127.0.0.1:{}"] }}
"#,
        hook.url(),
        hook.port
    )
}

fn alert(name: &str, service: &str, resolved: bool) -> Value {
    let mut a = json!({
        "labels": {"alertname": name, "service": service, "severity": "critical"},
        "startsAt": "2026-01-01T00:00:00Z",
    });
    if resolved {
        a["endsAt"] = "2026-01-01T00:05:00Z".into();
    }
    a
}

async fn post(t: &Tocsin, alerts: Vec<Value>) -> Result<()> {
    let r = t
        .http
        .post(t.url("/api/v2/alerts"))
        .json(&alerts)
        .send()
        .await?;
    ensure!(r.status().is_success(), "{}", r.status());
    Ok(())
}

fn bodies(hook: &WebhookReceiver) -> Vec<Value> {
    hook.received().into_iter().map(|r| r.body).collect()
}

#[tokio::test]
async fn a_storm_of_alerts_becomes_one_notification_per_group() -> Result<()> {
    let hook = WebhookReceiver::start(&[], 200).await?;
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "webhook"],
        default_rules: false,
        rules: vec![("grouped.toml".into(), rule(&hook))],
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_ENGINE_ESCALATION_TICK_MS".into(), "100".into()),
        ],
        ..Setup::default()
    })
    .await?;
    let mut storm: Vec<Value> = (1..=5)
        .map(|i| alert(&format!("DB_{i}"), "db", false))
        .collect();
    storm.push(alert("DB_1", "web", false));
    storm.push(alert("DB_2", "web", false));
    post(&t, storm).await?;
    wait_for("one notification per service", WAIT, || async {
        Ok(hook.received().len() >= 2)
    })
    .await?;
    let got = bodies(&hook);
    let of = |b: &[Value], service: &str| -> Vec<Value> {
        b.iter()
            .filter(|x| x["labels"]["service"] == service)
            .cloned()
            .collect()
    };
    let db = of(&got, "db");
    ensure!(db.len() == 1, "{got:?}");
    ensure!(
        db[0]["labels"]["group-size"] == "5"
            && db[0]["title"] == "5 alerts of grouped for service=db"
            && db[0]["key"] == "group:service=db",
        "{}",
        db[0]
    );
    let summary = db[0]["summary"].as_str().unwrap_or_default();
    ensure!(
        (1..=5).all(|i| summary.contains(&format!("- DB_{i} x"))),
        "{summary}"
    );
    let web = of(&got, "web");
    ensure!(
        web.len() == 1 && web[0]["labels"]["group-size"] == "2",
        "{got:?}"
    );

    // News for one group: one more notification, listing all six.
    post(&t, vec![alert("DB_6", "db", false)]).await?;
    wait_for("the group's second notification", WAIT, || async {
        Ok(of(&bodies(&hook), "db").len() >= 2)
    })
    .await?;
    let db = of(&bodies(&hook), "db");
    ensure!(db[1]["labels"]["group-size"] == "6", "{}", db[1]);

    // Resolved: said once, then the group is gone.
    post(
        &t,
        (1..=6)
            .map(|i| alert(&format!("DB_{i}"), "db", true))
            .collect(),
    )
    .await?;
    wait_for("the resolution of the group", WAIT, || async {
        Ok(of(&bodies(&hook), "db").len() >= 3)
    })
    .await?;
    let db = of(&bodies(&hook), "db");
    let last = &db[2];
    ensure!(
        last["title"] == "0 alerts of grouped for service=db (6 resolved)"
            && last["summary"]
                .as_str()
                .is_some_and(|s| s.matches("[RESOLVED]").count() == 6),
        "{last}"
    );
    let history = t.get_json("/v1/notifications?rule=grouped").await?;
    let n = history["notifications"].as_array().map_or(0, Vec::len);
    ensure!(
        n == 4,
        "four group notifications in the history, not one per alert: {history}"
    );
    Ok(())
}
