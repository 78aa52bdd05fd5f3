//! Inhibition: while DATABASE_CONNECTION_FAILED is active for a service,
//! REDIS_CONNECTION_FAILED of the same service is counted and recorded
//! (history `inhibitedBy`, `tocsin_alerts_inhibited_total`), listed as
//! suppressed with `inhibitedBy` (also by the real `amtool`), but not
//! notified; another service's is. Once the source resolves (a resolved
//! Alertmanager alert), the target notifies again. A broken inhibition
//! file is refused with where, and the previous version keeps serving.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::{json, Value};
use tocsin_tests::{wait_for, Setup, Tocsin, Ws};

const WAIT: Duration = Duration::from_secs(20);

fn rule(code: &str) -> String {
    format!(
        r#"
[match]
codes = ["{code}"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
[[channels]]
plugin = "websocket"
grants = {{ websocket = true }}
"#
    )
}

const INHIBIT: &str = r#"
# The database is down: its services' Redis alerts are noise.
[[inhibit]]
source = ['error-code="DATABASE_CONNECTION_FAILED"']
target = ['error-code=~"REDIS_.*"']
equal = ["service"]
"#;

/// Posts REDIS_CONNECTION_FAILED for `service`, then a barrier; the
/// service of the next frame (frames keep the batches' order).
async fn redis_down(t: &Tocsin, ws: &mut Ws, service: &str) -> Result<String> {
    t.send("REDIS_CONNECTION_FAILED", service, 1, "redis down")
        .await?;
    t.send("REDIS_CONNECTION_FAILED", "barrier", 1, "after")
        .await?;
    let n = ws.next(WAIT).await?;
    let first = n["labels"]["service"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if first != "barrier" {
        let b = ws.next(WAIT).await?;
        ensure!(b["labels"]["service"] == "barrier", "{b}");
    }
    Ok(first)
}

/// The database alert of `service` through the Alertmanager API: firing,
/// or resolved (`endsAt` in the past).
async fn database(t: &Tocsin, service: &str, resolved: bool) -> Result<()> {
    let mut alert = json!({
        "labels": {"alertname": "DATABASE_CONNECTION_FAILED", "service": service, "severity": "critical"},
        "startsAt": "2026-01-01T00:00:00Z",
    });
    if resolved {
        alert["endsAt"] = "2026-01-01T00:05:00Z".into();
    }
    let r = t
        .http
        .post(t.url("/api/v2/alerts"))
        .json(&json!([alert]))
        .send()
        .await?;
    ensure!(r.status().is_success(), "{}", r.status());
    Ok(())
}

async fn amtool_inhibited(t: &Tocsin) -> Result<Value> {
    let mut cmd = tokio::process::Command::new("amtool");
    cmd.arg(format!("--alertmanager.url={}", t.base))
        .args(["-o", "json", "alert", "query", "--inhibited"])
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .map_err(|_| anyhow!("amtool did not finish within {WAIT:?}"))?
        .context("starting amtool (installed by `cargo xtask test`)")?;
    ensure!(
        out.status.success(),
        "amtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn listed<'a>(alerts: &'a Value, code: &str, service: &str) -> Option<&'a Value> {
    alerts
        .as_array()?
        .iter()
        .find(|a| a["labels"]["error-code"] == code && a["labels"]["service"] == service)
}

#[tokio::test]
async fn an_active_database_alert_inhibits_redis_alerts_of_its_service() -> Result<()> {
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        rules: vec![
            ("db.toml".into(), rule("DATABASE_CONNECTION_FAILED")),
            ("redis.toml".into(), rule("REDIS_CONNECTION_FAILED")),
            ("inhibit.toml".into(), INHIBIT.into()),
        ],
        ..Setup::default()
    })
    .await?;
    let status = t.get_json("/v1/policies").await?;
    ensure!(
        status["files"][0]["inhibit"].as_array().map(Vec::len) == Some(1),
        "{status}"
    );
    let rules = t.get_json("/v1/rules").await?;
    ensure!(
        !rules.to_string().contains("inhibit.toml"),
        "the inhibition file is not a rule: {rules}"
    );
    let mut ws = t.ws("").await?;

    ensure!(
        redis_down(&t, &mut ws, "a").await? == "a",
        "nothing inhibits it yet"
    );
    database(&t, "a", false).await?;
    let n = ws.next(WAIT).await?;
    ensure!(
        n["labels"]["error-code"] == "DATABASE_CONNECTION_FAILED",
        "{n}"
    );

    // Muted for the same service, notified for another.
    ensure!(
        redis_down(&t, &mut ws, "a").await? == "barrier",
        "notified while its database is down"
    );
    ensure!(
        redis_down(&t, &mut ws, "b").await? == "b",
        "another service's alert must notify"
    );
    let n = t
        .metric("tocsin_alerts_inhibited_total", &[("rule", "redis")])
        .await?;
    ensure!(n == 1.0, "tocsin_alerts_inhibited_total {n}");
    let history = t.get_json("/v1/notifications?rule=redis").await?;
    ensure!(
        history.to_string().contains("inhibitedBy"),
        "history shows the inhibited firing: {history}"
    );

    // Listed as suppressed, with the database alert's fingerprint.
    let alerts = t.get_json("/api/v2/alerts").await?;
    let db = listed(&alerts, "DATABASE_CONNECTION_FAILED", "a")
        .ok_or_else(|| anyhow!("no database alert: {alerts}"))?;
    let target = listed(&alerts, "REDIS_CONNECTION_FAILED", "a")
        .ok_or_else(|| anyhow!("no redis alert: {alerts}"))?;
    ensure!(target["status"]["state"] == "suppressed", "{target}");
    ensure!(
        target["status"]["inhibitedBy"] == json!([db["fingerprint"]]),
        "{target}"
    );
    let other = listed(&alerts, "REDIS_CONNECTION_FAILED", "b")
        .ok_or_else(|| anyhow!("no redis alert for b: {alerts}"))?;
    ensure!(other["status"]["state"] == "active", "{other}");
    let not_inhibited = t.get_json("/api/v2/alerts?inhibited=false").await?;
    ensure!(
        listed(&not_inhibited, "REDIS_CONNECTION_FAILED", "a").is_none(),
        "{not_inhibited}"
    );
    let am = amtool_inhibited(&t).await?;
    let seen = listed(&am, "REDIS_CONNECTION_FAILED", "a")
        .ok_or_else(|| anyhow!("amtool does not list the inhibited alert: {am}"))?;
    ensure!(
        seen["status"]["inhibitedBy"] == json!([db["fingerprint"]]),
        "{seen}"
    );

    // A broken edit is refused with where; the previous version serves.
    t.write_rule(
        "inhibit.toml",
        "[[inhibit]]\nsource = ['nonsense']\ntarget = ['a=b']\n",
    )?;
    wait_for("the broken inhibition file refused", WAIT, || async {
        let s = t.get_json("/v1/policies").await?;
        let e = s["files"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(e.contains("inhibit.toml") && e.contains("#1") && e.contains("previous version"))
    })
    .await?;
    ensure!(
        redis_down(&t, &mut ws, "a").await? == "barrier",
        "the previous inhibition keeps serving"
    );

    // The database is back: its alert resolves, and Redis alerts notify.
    database(&t, "a", true).await?;
    let n = ws.next(WAIT).await?;
    ensure!(n["labels"]["status"] == "resolved", "{n}");
    ensure!(
        redis_down(&t, &mut ws, "a").await? == "a",
        "notifies once its source resolved"
    );
    Ok(())
}
