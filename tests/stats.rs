//! The dashboard's numbers (`/v1/stats`), against the real engine:
//! every event and alert counted by code, service and rule, ranked, the
//! busy service's trend and last error; kept across a restart on the
//! embedded store; on Redis, one set of buckets that two instances add
//! into and either one reports whole. And who may read them: the admin
//! token, or anyone with `[http] read_only`, which still opens no action.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use tocsin_tests::{wait_for, Setup, Tocsin};

const RULE: &str = r#"
[match]
codes = ["DB_DOWN"]
[aggregate]
plugin = "threshold"
config = { threshold = 5, window = "1h" }
[[channels]]
plugin = "websocket"
grants = { websocket = true }
"#;

/// Takes every event and never fires: an event both rules take is one
/// event, counted for each rule.
const EVERY: &str = r#"
[aggregate]
plugin = "threshold"
config = { threshold = 1000000, window = "1h" }
[[channels]]
plugin = "websocket"
grants = { websocket = true }
"#;

fn setup(env: Vec<(&str, &str)>) -> Setup {
    let mut all = vec![
        ("TOCSIN_ENGINE_WORKERS", "1"),
        ("TOCSIN_ENGINE_STATS_FLUSH_MS", "200"),
    ];
    all.extend(env);
    Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        rules: vec![
            ("db.toml".into(), RULE.into()),
            ("all.toml".into(), EVERY.into()),
        ],
        env: all
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Setup::default()
    }
}

/// Posts `n` events of `code` from `service`, in one request.
async fn post(t: &Tocsin, code: &str, service: &str, n: usize) -> Result<()> {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"errorCode": code, "severity": "high", "serviceName": service, "message": format!("{code} #{i}")}))
        .collect();
    let (status, body) = t.post_events(&Value::Array(events)).await?;
    ensure!(status == 202, "{status} {body}");
    Ok(())
}

fn total(report: &Value, what: &str) -> u64 {
    report[what]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// Waits until `t`'s hour report has `events` events and `alerts` alerts.
async fn wait_totals(t: &Tocsin, events: u64, alerts: u64) -> Result<Value> {
    let last = std::sync::Mutex::new(Value::Null);
    let waited = wait_for(
        &format!("{events} events and {alerts} alerts in /v1/stats"),
        Duration::from_secs(30),
        || async {
            let r = t.get_json("/v1/stats?range=1h").await?;
            let done = total(&r, "events") == events && total(&r, "alerts") == alerts;
            if let Ok(mut l) = last.lock() {
                *l = r;
            }
            Ok(done)
        },
    )
    .await;
    let last = last.into_inner().unwrap_or_default();
    waited.map_err(|e| anyhow::anyhow!("{e}; last report: {last}"))?;
    Ok(last)
}

#[tokio::test]
async fn events_and_alerts_are_counted_ranked_and_kept_across_a_restart() -> Result<()> {
    let mut t = Tocsin::start(setup(vec![])).await?;
    post(&t, "DB_DOWN", "db", 12).await?;
    post(&t, "TIMEOUT", "api", 3).await?;
    post(&t, "TIMEOUT", "db", 1).await?;
    // 12 DB_DOWN at threshold 5: two alerts.
    let r = wait_totals(&t, 16, 2).await?;
    ensure!(
        r["range"] == "1h" && r["times"].as_array().map(Vec::len) == Some(60),
        "{r}"
    );
    let codes = &r["top"]["codes"];
    ensure!(
        codes[0] == json!({"name": "DB_DOWN", "events": 12, "alerts": 2})
            && codes[1] == json!({"name": "TIMEOUT", "events": 4, "alerts": 0}),
        "top codes: {codes}"
    );
    ensure!(
        r["top"]["services"][0]["name"] == "db" && r["top"]["services"][0]["events"] == 13,
        "{r}"
    );
    ensure!(
        r["rules"]
            == json!({"db": {"events": 12, "alerts": 2}, "all": {"events": 16, "alerts": 0}})
            && r["top"]["rules"][0] == json!({"name": "all", "events": 16, "alerts": 0}),
        "per rule: {r}"
    );
    let stacked = &r["byCode"];
    ensure!(
        stacked["names"] == json!(["DB_DOWN", "TIMEOUT"]),
        "{stacked}"
    );
    let db = r["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "db"))
        .cloned()
        .unwrap_or_default();
    ensure!(db["events"] == 13 && db["trend"] == "rising", "{db}");
    let last = &db["lastError"];
    ensure!(
        last["code"]
            .as_str()
            .is_some_and(|c| c == "DB_DOWN" || c == "TIMEOUT")
            && last["message"].as_str().is_some_and(|m| m.contains('#')),
        "{db}"
    );

    // A graceful restart flushes; the store keeps the buckets.
    t.stop()?;
    t.spawn().await?;
    let r = wait_totals(&t, 16, 2).await?;
    ensure!(
        r["top"]["codes"][0]["events"] == 12,
        "after the restart: {r}"
    );
    post(&t, "TIMEOUT", "api", 2).await?;
    wait_totals(&t, 18, 2).await?;

    let bad = t.http.get(t.url("/v1/stats?range=2w")).send().await?;
    ensure!(bad.status() == 400, "{}", bad.status());
    ensure!(
        bad.text().await?.contains("1h, 24h, 7d"),
        "the error names the ranges"
    );
    let week = t.get_json("/v1/stats?range=7d").await?;
    ensure!(
        total(&week, "events") == 18 && week["stepMs"] == 3_600_000,
        "the hour buckets: {week}"
    );
    Ok(())
}

#[tokio::test]
async fn instances_sharing_redis_report_the_whole_cluster() -> Result<()> {
    let prefix = format!("stats-{}:", uuid::Uuid::new_v4().simple());
    let env = vec![
        ("TOCSIN_REDIS_URL", "redis://127.0.0.1:6379"),
        ("TOCSIN_REDIS_PREFIX", prefix.as_str()),
    ];
    let a = Tocsin::start(setup(env.clone())).await?;
    let b = Tocsin::start(setup(env)).await?;
    post(&a, "DB_DOWN", "db", 3).await?;
    post(&b, "DB_DOWN", "db", 4).await?;
    post(&b, "DISK_FULL", "storage", 2).await?;
    // The shared rule counts 7 DB_DOWN: one alert, on whichever instance.
    let ra = wait_totals(&a, 9, 1).await?;
    let rb = wait_totals(&b, 9, 1).await?;
    for r in [&ra, &rb] {
        ensure!(
            r["top"]["codes"][0] == json!({"name": "DB_DOWN", "events": 7, "alerts": 1})
                && r["top"]["services"][1]["name"] == "storage",
            "{r}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_admin_token_guards_the_stats_unless_read_only_opens_reading() -> Result<()> {
    let token = "admin-s3cret";
    let closed = Tocsin::start(setup(vec![("TOCSIN_HTTP_ADMIN_TOKEN", token)])).await?;
    let r = closed.http.get(closed.url("/v1/stats")).send().await?;
    ensure!(r.status() == 401, "no token: {}", r.status());
    let r = closed
        .http
        .get(closed.url("/v1/stats"))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(r.status() == 200, "with the token: {}", r.status());
    let access = closed.get_json("/v1/access").await?;
    ensure!(
        access["admin"] == false && access["read"] == false,
        "{access}"
    );

    let open = Tocsin::start(setup(vec![
        ("TOCSIN_HTTP_ADMIN_TOKEN", token),
        ("TOCSIN_HTTP_READ_ONLY", "true"),
    ]))
    .await?;
    for path in [
        "/v1/stats",
        "/v1/rules",
        "/v1/notifications",
        "/api/v2/silences",
    ] {
        let r = open.http.get(open.url(path)).send().await?;
        ensure!(r.status() == 200, "read-only {path}: {}", r.status());
    }
    let replay = open
        .http
        .post(open.url("/v1/deliveries/replay"))
        .send()
        .await?;
    ensure!(
        replay.status() == 401,
        "an action without the token: {}",
        replay.status()
    );
    let silence = open
        .http
        .post(open.url("/api/v2/silences"))
        .json(
            &json!({"matchers": [{"name": "service", "value": "db", "isRegex": false}],
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
            "createdBy": "x", "comment": "y"}),
        )
        .send()
        .await?;
    ensure!(
        silence.status() == 401,
        "a silence without the token: {}",
        silence.status()
    );
    let access = open.get_json("/v1/access").await?;
    ensure!(
        access["admin"] == false && access["read"] == true,
        "{access}"
    );
    let with = open
        .http
        .get(open.url("/v1/access"))
        .bearer_auth(token)
        .send()
        .await?
        .json::<Value>()
        .await?;
    ensure!(with["admin"] == true, "{with}");
    Ok(())
}
