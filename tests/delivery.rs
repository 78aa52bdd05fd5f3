//! Delivery that never loses a notification: real SMTP (aiosmtpd over TCP),
//! a real HTTP webhook receiver, retries with growing intervals, per-channel
//! independence, crash recovery from the outbox, and WebSocket fan-out.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tocsin_tests::peers::{SmtpSink, WebhookReceiver};
use tocsin_tests::{event, free_port, wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(20);

fn smtp_env(port: u16) -> Vec<(String, String)> {
    vec![
        ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
        ("TOCSIN_SMTP_HOST".into(), "127.0.0.1".into()),
        ("TOCSIN_SMTP_PORT".into(), port.to_string()),
        ("TOCSIN_SMTP_FROM".into(), "tocsin@example.com".into()),
        ("TOCSIN_SMTP_TO".into(), "ops@example.com".into()),
    ]
}

async fn deliveries(t: &Tocsin, status: &str) -> anyhow::Result<Vec<Value>> {
    Ok(t.get_json(&format!("/v1/deliveries?status={status}"))
        .await?["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[tokio::test]
async fn database_failure_sends_one_email_with_subject_recipients_and_body() -> anyhow::Result<()> {
    let smtp = SmtpSink::start(None).await?;
    let t = Tocsin::start(Setup {
        env: smtp_env(smtp.port),
        ..Setup::default()
    })
    .await?;
    t.post_events(&event(
        "DATABASE_CONNECTION_FAILED",
        "critical",
        "billing",
        "connection refused to pg-main:5432",
    ))
    .await?;
    wait_for("one email", WAIT, || async {
        Ok(smtp.messages()?.len() == 1)
    })
    .await?;
    let m = &smtp.messages()?[0];
    assert_eq!(m["to"], serde_json::json!(["ops@example.com"]));
    assert_eq!(m["from"], "tocsin@example.com");
    assert_eq!(
        m["subject"], "[tocsin][critical] DATABASE_CONNECTION_FAILED x1 on billing",
        "{m}"
    );
    let text = m["text"].as_str().unwrap_or("");
    assert!(text.contains("connection refused to pg-main:5432"), "{m}");
    let message_id = m["message_id"].as_str().unwrap_or("").to_string();

    // The notification history shows it delivered.
    wait_for("the delivery recorded as delivered", WAIT, || async {
        let v = t
            .get_json("/v1/notifications?rule=database-connection-failed")
            .await?;
        Ok(v["notifications"][0]["deliveries"][0]["status"] == "delivered")
    })
    .await?;
    let v = t
        .get_json("/v1/notifications?rule=database-connection-failed")
        .await?;
    let id = v["notifications"][0]["deliveries"][0]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(
        message_id,
        format!("<{id}@tocsin>"),
        "Message-ID is the delivery id"
    );
    Ok(())
}

/// An SMTP server requiring AUTH (alerts / s3cret), and an engine that logs
/// in with `password` and posts one DATABASE_CONNECTION_FAILED (`message`).
async fn auth_setup(
    password: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(SmtpSink, Tocsin)> {
    let smtp = SmtpSink::start(Some(("alerts", "s3cret"))).await?;
    let mut env = smtp_env(smtp.port);
    env.push(("TOCSIN_SMTP_USERNAME".into(), "alerts".into()));
    env.push(("TOCSIN_SMTP_PASSWORD".into(), password.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let t = Tocsin::start(Setup {
        env,
        ..Setup::default()
    })
    .await?;
    t.post_events(&event(
        "DATABASE_CONNECTION_FAILED",
        "critical",
        "billing",
        message,
    ))
    .await?;
    Ok((smtp, t))
}

#[tokio::test]
async fn email_with_smtp_auth() -> anyhow::Result<()> {
    let (smtp, _t) = auth_setup("s3cret", "auth test", &[]).await?;
    wait_for("the authenticated email", WAIT, || async {
        Ok(smtp.messages()?.len() == 1)
    })
    .await?;
    assert!(smtp.messages()?[0]["text"]
        .as_str()
        .unwrap_or("")
        .contains("auth test"));
    Ok(())
}

#[tokio::test]
async fn wrong_smtp_password_is_dead_lettered_not_retried() -> anyhow::Result<()> {
    let (smtp, t) = auth_setup("wrong", "x", &[("TOCSIN_DELIVERY_ATTEMPTS", "5")]).await?;
    wait_for("a dead letter", WAIT, || async {
        Ok(deliveries(&t, "dead").await?.len() == 1)
    })
    .await?;
    let dead = &deliveries(&t, "dead").await?[0];
    assert_eq!(dead["attempts"], 1, "SMTP 535 is permanent: {dead}");
    assert!(
        dead["lastError"].as_str().unwrap_or("").contains("SMTP"),
        "{dead}"
    );
    assert!(smtp.messages()?.is_empty());
    Ok(())
}

#[tokio::test]
async fn smtp_down_then_up_is_delivered_exactly_once_after_growing_retries() -> anyhow::Result<()> {
    let port = free_port()?;
    let mut smtp = SmtpSink::stopped(port)?;
    let rule = r#"
[match]
codes = ["MAIL_TEST"]
[aggregate]
plugin = "threshold"
config = { threshold = 1, window = "1h" }
[[channels]]
plugin = "email"
grants = { email = ["default"] }
retry = { attempts = 20, base = "300ms", cap = "20s" }
"#;
    let setup = Setup {
        env: smtp_env(port),
        default_rules: false,
        rules: vec![("mail.toml".into(), rule.into())],
        ..Setup::default()
    };
    let t = Tocsin::start(setup).await?;
    t.send("MAIL_TEST", "svc", 1, "while smtp is down").await?;

    // Watch the retries: each scheduled attempt waits longer than the last.
    // A busy machine may hide some attempts from this poll; three seen
    // (any three) are enough, see below.
    let mut schedule: Vec<(u64, i64)> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT * 2;
    while schedule.len() < 3 || schedule.last().is_none_or(|l| l.0 < 4) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "four failed attempts not seen: {schedule:?}"
        );
        if let Some(d) = deliveries(&t, "failed").await?.first() {
            let entry = (
                d["attempts"].as_u64().unwrap_or(0),
                d["nextAttemptAt"].as_i64().unwrap_or(0),
            );
            if schedule.last().map(|l| l.0) != Some(entry.0) {
                schedule.push(entry);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(smtp.messages()?.is_empty());

    smtp.run().await?;
    // The next attempt may be up to ~20 s away (base × 2ⁿ, capped).
    wait_for("delivery once the server is up", WAIT * 3, || async {
        Ok(deliveries(&t, "delivered").await?.len() == 1)
    })
    .await?;
    assert_eq!(smtp.messages()?.len(), 1, "exactly one email");
    assert!(deliveries(&t, "pending").await?.is_empty());

    // Retry delays grow (base × 2ⁿ with ±25 % jitter always grows by ≥ 1.2×),
    // so over consecutive runs of attempts between two observations, the
    // mean delay per attempt grows too, however many attempts a run spans.
    let gaps: Vec<i64> = schedule
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) / (w[1].0 - w[0].0).max(1) as i64)
        .collect();
    assert!(gaps.len() >= 2, "observed schedule {schedule:?}");
    for w in gaps.windows(2) {
        assert!(w[1] > w[0], "retry intervals grow: {gaps:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_failing_webhook_is_retried_alone_and_the_email_is_sent_once() -> anyhow::Result<()> {
    let smtp = SmtpSink::start(None).await?;
    let hook = WebhookReceiver::start(&[500, 500, 500], 200).await?;
    let rule = format!(
        r#"
[match]
codes = ["BOTH_TEST"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
[[channels]]
plugin = "webhook"
config = {{ url = "{}" }}
grants = {{ http = ["127.0.0.1:{}"] }}
retry = {{ attempts = 5, base = "100ms" }}
[[channels]]
plugin = "email"
grants = {{ email = ["default"] }}
"#,
        hook.url(),
        hook.port
    );
    let setup = Setup {
        env: smtp_env(smtp.port),
        default_rules: false,
        rules: vec![("both.toml".into(), rule)],
        ..Setup::default()
    };
    let t = Tocsin::start(setup).await?;
    t.send("BOTH_TEST", "svc", 1, "two channels").await?;
    wait_for("the webhook delivered after three 500s", WAIT, || async {
        Ok(hook.received().iter().any(|r| r.status == 200))
    })
    .await?;
    wait_for("the email", WAIT, || async {
        Ok(!smtp.messages()?.is_empty())
    })
    .await?;
    wait_for("both deliveries final", WAIT, || async {
        Ok(deliveries(&t, "delivered").await?.len() == 2)
    })
    .await?;

    let got = hook.received();
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![500, 500, 500, 200],
        "delivered once, after three failures"
    );
    let keys: BTreeSet<&str> = got.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt carries the same idempotency key"
    );
    assert_eq!(got[3].body["count"], 1);
    assert_eq!(
        smtp.messages()?.len(),
        1,
        "the email was not resent by the webhook's retries"
    );
    let webhook = deliveries(&t, "delivered")
        .await?
        .into_iter()
        .find(|d| d["kind"] == "http")
        .unwrap_or_default();
    assert_eq!(webhook["attempts"], 4);
    Ok(())
}

/// A rule alerting on every `code` event through a webhook to `hook`,
/// with `extra` lines for the channel (e.g. its retry policy).
fn webhook_rule(code: &str, hook: &WebhookReceiver, extra: &str) -> String {
    webhook_rule_matching(&format!("codes = [\"{code}\"]"), hook, extra)
}

/// The same for the events `matcher` (a `[match]` line) selects.
fn webhook_rule_matching(matcher: &str, hook: &WebhookReceiver, extra: &str) -> String {
    format!(
        r#"
[match]
{matcher}
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
[[channels]]
plugin = "webhook"
config = {{ url = "{}" }}
grants = {{ http = ["127.0.0.1"] }}
{extra}
"#,
        hook.url()
    )
}

#[tokio::test]
async fn pending_deliveries_survive_sigkill() -> anyhow::Result<()> {
    const ALERTS: usize = 25;
    let hook = WebhookReceiver::start(&[], 503).await?;
    let rule = webhook_rule(
        "CRASH_TEST",
        &hook,
        r#"retry = { attempts = 50, base = "300ms", cap = "600ms" }"#,
    );
    let setup = Setup {
        default_rules: false,
        rules: vec![("crash.toml".into(), rule)],
        ..Setup::default()
    };
    let mut t = Tocsin::start(setup).await?;
    t.send("CRASH_TEST", "svc", ALERTS, "pending").await?;
    wait_for("every delivery attempted and failing", WAIT, || async {
        Ok(deliveries(&t, "failed").await?.len() == ALERTS)
    })
    .await?;
    t.kill()?;
    hook.answer(200);
    t.spawn().await?;
    wait_for(
        "every pending delivery completed after the restart",
        WAIT,
        || async {
            let ok: BTreeSet<String> = hook
                .received()
                .into_iter()
                .filter(|r| r.status == 200)
                .map(|r| r.idempotency_key)
                .collect();
            Ok(ok.len() == ALERTS)
        },
    )
    .await?;
    wait_for("outbox drained", WAIT, || async {
        Ok(deliveries(&t, "pending").await?.is_empty())
    })
    .await?;
    assert_eq!(
        deliveries(&t, "delivered").await?.len(),
        ALERTS,
        "none lost"
    );
    Ok(())
}

#[tokio::test]
async fn dead_letters_can_be_replayed() -> anyhow::Result<()> {
    let hook = WebhookReceiver::start(&[], 404).await?;
    let rule = webhook_rule("DLQ_TEST", &hook, "");
    let setup = Setup {
        default_rules: false,
        rules: vec![("dlq.toml".into(), rule)],
        ..Setup::default()
    };
    let t = Tocsin::start(setup).await?;
    t.send("DLQ_TEST", "svc", 1, "x").await?;
    wait_for("a dead letter after a 404", WAIT, || async {
        Ok(deliveries(&t, "dead").await?.len() == 1)
    })
    .await?;
    assert_eq!(hook.received().len(), 1, "4xx is not retried");
    hook.answer(200);
    let out = std::process::Command::new(tocsin_tests::binary()?)
        .args(["dlq", "replay", "--all", "--url", &t.base])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 1"));
    wait_for("the replayed delivery", WAIT, || async {
        Ok(deliveries(&t, "delivered").await?.len() == 1)
    })
    .await?;
    let list = std::process::Command::new(tocsin_tests::binary()?)
        .args(["dlq", "list", "--url", &t.base])
        .output()?;
    assert!(String::from_utf8_lossy(&list.stdout).contains("no dead deliveries"));
    Ok(())
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_does_not_delay_the_others() -> anyhow::Result<()> {
    const ALERTS: usize = 3000;
    let rule = r#"
[match]
codes = ["WS_TEST"]
[aggregate]
plugin = "threshold"
config = { threshold = 1, window = "1h" }
[[channels]]
plugin = "websocket"
grants = { websocket = true }
"#;
    let setup = Setup {
        default_rules: false,
        rules: vec![("ws.toml".into(), rule.into())],
        ..Setup::default()
    };
    let t = Tocsin::start(setup).await?;
    let _stalled = t.ws("").await?; // connected, never read
    let mut a = t.ws("").await?;
    let mut b = t.ws("").await?;
    let long = "x".repeat(2000);
    for chunk in 0..(ALERTS / 100) {
        let batch: Vec<Value> = (0..100)
            .map(|i| event("WS_TEST", "high", &format!("svc-{chunk}-{i}"), &long))
            .collect();
        let (status, _) = t.post_events(&Value::Array(batch)).await?;
        assert_eq!(status, 202);
    }
    for ws in [&mut a, &mut b] {
        for i in 0..ALERTS {
            let n = ws
                .next(WAIT)
                .await
                .map_err(|e| anyhow::anyhow!("frame {i}: {e}"))?;
            assert_eq!(n["rule"], "ws");
        }
    }
    Ok(())
}

/// `[delivery] attempts/base_ms/cap_ms` are the default retry policy of a
/// channel whose rule sets none: a webhook answering 500 is tried exactly
/// `attempts` times, then dead-lettered.
#[tokio::test]
async fn delivery_defaults_from_the_config_set_the_retries() -> anyhow::Result<()> {
    let hook = WebhookReceiver::start(&[], 500).await?;
    let setup = Setup {
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_DELIVERY_ATTEMPTS".into(), "5".into()),
            ("TOCSIN_DELIVERY_BASE_MS".into(), "50".into()),
            ("TOCSIN_DELIVERY_CAP_MS".into(), "200".into()),
        ],
        default_rules: false,
        rules: vec![(
            "defaults.toml".into(),
            webhook_rule("DEFAULTS_TEST", &hook, ""),
        )],
        ..Setup::default()
    };
    let t = Tocsin::start(setup).await?;
    t.send("DEFAULTS_TEST", "svc", 1, "always 500").await?;
    wait_for("the delivery dead-lettered", WAIT, || async {
        Ok(deliveries(&t, "dead").await?.len() == 1)
    })
    .await?;
    let dead = deliveries(&t, "dead").await?.remove(0);
    assert_eq!(dead["attempts"], 5, "[delivery] attempts = 5: {dead}");
    assert_eq!(hook.received().len(), 5, "the receiver saw five attempts");
    assert!(hook.received().iter().all(|r| r.status == 500));
    Ok(())
}

/// A resolved Alertmanager alert is a resolution of the pipeline: the
/// rule's webhook channel renders it (`status: resolved`), the outbox
/// records and delivers it, and the history keeps it beside the firing
/// notification.
#[tokio::test]
async fn a_resolved_alertmanager_alert_reaches_the_webhook_through_the_outbox() -> anyhow::Result<()>
{
    const TOKEN: &str = "am-resolve-token";
    let hook = WebhookReceiver::start(&[], 200).await?;
    let rule = webhook_rule_matching(r#"sources = ["alertmanager"]"#, &hook, "");
    let setup = Setup {
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_INGEST_ALERTMANAGER_TOKEN".into(), TOKEN.into()),
        ],
        plugins: vec!["threshold", "webhook"],
        default_rules: false,
        rules: vec![("am-hook.toml".into(), rule)],
        ..Setup::default()
    };
    let t = Tocsin::start(setup).await?;
    let http = reqwest::Client::new();
    let post = |ends_at: &str| {
        let body = serde_json::json!([{
            "labels": {"alertname": "DiskFull", "service": "db", "severity": "critical"},
            "annotations": {"summary": "disk 97% full"},
            "startsAt": "2026-01-15T08:00:00Z", "endsAt": ends_at,
        }]);
        http.post(t.url("/api/v2/alerts"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    assert_eq!(post("2099-01-01T00:00:00Z").await?.status().as_u16(), 200);
    wait_for("the firing alert at the webhook", WAIT, || async {
        Ok(hook.received().len() == 1)
    })
    .await?;
    let firing = hook.received().remove(0).body;
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["type"], "alert", "{firing}");

    assert_eq!(post("2026-01-15T09:00:00Z").await?.status().as_u16(), 200);
    wait_for("the resolution at the webhook", WAIT, || async {
        Ok(hook.received().len() == 2)
    })
    .await?;
    let got = hook.received().remove(1);
    let resolved = &got.body;
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["type"], "resolved", "{resolved}");
    assert_eq!(resolved["rule"], "am-hook", "{resolved}");
    assert_eq!(
        resolved["key"], firing["key"],
        "the same key as the firing alert"
    );
    assert_eq!(resolved["severity"], "critical", "{resolved}");
    assert_eq!(
        resolved["labels"]["endsAt"], "2026-01-15T09:00:00Z",
        "{resolved}"
    );
    assert!(
        resolved["labels"]["fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 16),
        "Prometheus's fingerprint of the label set: {resolved}"
    );

    // Through the outbox: a delivery row, delivered once, whose
    // idempotency key the receiver saw; and a notification in the history.
    wait_for("both deliveries recorded as delivered", WAIT, || async {
        Ok(deliveries(&t, "delivered").await?.len() == 2)
    })
    .await?;
    let rows = deliveries(&t, "delivered").await?;
    assert!(
        rows.iter()
            .all(|d| d["rule"] == "am-hook" && d["kind"] == "http" && d["attempts"] == 1),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|d| d["id"] == got.idempotency_key.as_str()),
        "the resolution's delivery id is its idempotency key: {rows:?} / {}",
        got.idempotency_key
    );
    let history = t.get_json("/v1/notifications").await?;
    let titles: Vec<&str> = history["notifications"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["title"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        titles.iter().any(|t| t.ends_with("resolved")),
        "the resolution is in the history: {titles:?}"
    );
    // Posted again (Prometheus re-sends resolutions for 15 minutes): not
    // delivered twice.
    assert_eq!(post("2026-01-15T09:00:00Z").await?.status().as_u16(), 200);
    assert_eq!(
        t.metric(
            "tocsin_ingest_duplicates_total",
            &[("source", "alertmanager")]
        )
        .await?,
        1.0
    );
    assert_eq!(hook.received().len(), 2);
    Ok(())
}
