//! tocsin watching itself, against real conditions: a webhook that
//! refuses (its circuit breaker opens, its deliveries die), a rule file
//! refused on reload, a RabbitMQ backlog built by a publisher while the
//! consumer is paused (a backlog, and a lagging consumer), Redis paused
//! (`CLIENT PAUSE`: degraded state, slow processing), an SMTP server that
//! refuses connections, a plugin holding the worker (the pipeline's queue
//! backs up), and a plugin that keeps trapping with the dead
//! letters it leaves in RabbitMQ. Each raises a self alert through the
//! shipped rule (`rules/tocsin-self.toml`) seen on the WebSocket, and,
//! once the condition clears (fixed, replayed), its resolution; the same
//! backlog twice within 5 minutes alerts once. `tests/amqp_dlq.rs` covers
//! the dead-letter replay itself.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use serde_json::{json, Value};
use tocsin_tests::peers::{SmtpSink, WebhookReceiver};
use tocsin_tests::rabbit::Rabbit;
use tocsin_tests::{root, wait_for, Setup, Tocsin, Ws};

const WAIT: Duration = Duration::from_secs(90);

/// The tests that pause the shared Redis take turns.
static REDIS_PAUSE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn self_rule() -> Result<(String, String)> {
    let text = std::fs::read_to_string(root().join("rules/tocsin-self.toml"))?;
    Ok(("tocsin-self.toml".into(), text))
}

fn setup(rules: Vec<(String, String)>, env: Vec<(String, String)>) -> Result<Setup> {
    setup_with(rules, env, &[])
}

fn setup_with(
    rules: Vec<(String, String)>,
    env: Vec<(String, String)>,
    more_plugins: &[&'static str],
) -> Result<Setup> {
    let mut all = vec![self_rule()?];
    all.extend(rules);
    let mut vars: Vec<(String, String)> = [
        ("TOCSIN_ENGINE_WORKERS", "1"),
        ("TOCSIN_WATCH_ENABLED", "true"),
        ("TOCSIN_WATCH_INTERVAL_MS", "200"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(env);
    let mut plugins = vec![
        "threshold",
        "severity-router",
        "websocket",
        "email",
        "webhook",
    ];
    plugins.extend_from_slice(more_plugins);
    Ok(Setup {
        plugins,
        default_rules: false,
        rules: all,
        env: vars,
        ..Setup::default()
    })
}

fn code(frame: &Value) -> &str {
    frame["labels"]["error-code"].as_str().unwrap_or("")
}

/// The frame of `code` of `kind` (`alert` or `resolved`) for `service`:
/// one already in `seen` (conditions may arrive in any order), else the
/// next such frame read (every frame read is kept in `seen`).
async fn frame(
    ws: &mut Ws,
    seen: &mut Vec<Value>,
    want: &str,
    kind: &str,
    service: &str,
) -> Result<Value> {
    let is = |f: &Value| code(f) == want && f["type"] == kind && f["labels"]["service"] == service;
    if let Some(f) = seen.iter().find(|f| is(f)) {
        return Ok(f.clone());
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = ws.next(left).await.map_err(|e| {
            anyhow!("waiting for the {kind} of {want} ({service}): {e}; frames seen: {seen:?}")
        })?;
        seen.push(f.clone());
        if is(&f) {
            return Ok(f);
        }
    }
}

#[tokio::test]
async fn a_refusing_webhook_and_a_broken_rule_alert_and_resolve() -> Result<()> {
    let hook = WebhookReceiver::start(&[], 500).await?;
    let hooks = hook.rule("HOOK", 1);
    let t = Tocsin::start(setup(vec![("hooks.toml".into(), hooks)], vec![])?).await?;
    let mut ws = t.ws("").await?;
    let mut seen = Vec::new();

    // Twelve alerts, each refused once: the breaker opens, they die.
    let events: Vec<Value> = (0..12)
        .map(|i| json!({"errorCode": "HOOK", "severity": "high", "serviceName": format!("s{i}"), "message": "x"}))
        .collect();
    let (status, body) = t.post_events(&Value::Array(events)).await?;
    ensure!(status == 202, "{status} {body}");
    let target = format!("http://127.0.0.1:{}", hook.port);
    let breaker = format!("tocsin/{target}");
    let open = frame(&mut ws, &mut seen, "TOCSIN_BREAKER_OPEN", "alert", &breaker).await?;
    ensure!(open["rule"] == "tocsin-self", "{open}");
    let dead = frame(
        &mut ws,
        &mut seen,
        "TOCSIN_DELIVERY_DEAD",
        "alert",
        "tocsin/webhook",
    )
    .await?;
    ensure!(
        dead["summary"]
            .as_str()
            .is_some_and(|s| s.contains("channel webhook")),
        "{dead}"
    );

    // A broken rule file: refused, then fixed.
    t.write_rule("broken.toml", "[aggregate\nplugin = ")?;
    let refused = frame(
        &mut ws,
        &mut seen,
        "TOCSIN_RELOAD_REFUSED",
        "alert",
        "tocsin/broken.toml",
    )
    .await?;
    ensure!(
        refused["summary"]
            .as_str()
            .is_some_and(|s| s.contains("broken.toml")),
        "{refused}"
    );
    t.write_rule(
        "broken.toml",
        "[match]\ncodes = [\"NEVER\"]\n[aggregate]\nplugin = \"threshold\"\nconfig = { threshold = 1, window = \"1m\" }\n",
    )?;
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_RELOAD_REFUSED",
        "resolved",
        "tocsin/broken.toml",
    )
    .await?;

    // The receiver recovers; the dead deliveries are replayed: once the
    // breaker lets a probe through, it closes and they are delivered.
    hook.answer(200);
    let replay = t.http.post(t.url("/v1/deliveries/replay")).send().await?;
    ensure!(replay.status().is_success(), "replay: {}", replay.status());
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_DELIVERY_DEAD",
        "resolved",
        "tocsin/webhook",
    )
    .await?;
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_BREAKER_OPEN",
        "resolved",
        &breaker,
    )
    .await?;
    let alerts = seen
        .iter()
        .filter(|f| code(f) == "TOCSIN_BREAKER_OPEN" && f["type"] == "alert")
        .count();
    ensure!(alerts == 1, "one breaker alert, not {alerts}: {seen:?}");
    Ok(())
}

async fn amqp_control(t: &Tocsin, what: &str) -> Result<Value> {
    let r = t
        .http
        .post(t.url(&format!("/v1/amqp/{what}")))
        .send()
        .await?;
    ensure!(r.status().is_success(), "{what}: {}", r.status());
    Ok(r.json().await?)
}

#[tokio::test]
async fn a_paused_consumer_backlog_alerts_once_in_five_minutes_and_resolves() -> Result<()> {
    let rabbit = Rabbit::new("watch").await?;
    let mut env = rabbit.env();
    env.extend(
        [
            ("TOCSIN_AMQP_PREFETCH", "10"),
            ("TOCSIN_WATCH_AMQP_QUEUE_DEPTH", "50"),
            ("TOCSIN_WATCH_AMQP_LAG_SECS", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let t = Tocsin::start(setup(vec![], env)?).await?;
    wait_for("the consumer", WAIT, || async {
        Ok(t.get_json("/readyz").await?["amqp"]["connected"] == true)
    })
    .await?;
    let mut ws = t.ws("").await?;
    let mut seen = Vec::new();
    let fired = || {
        t.metric(
            "tocsin_self_events_total",
            &[("code", "TOCSIN_AMQP_BACKLOG"), ("kind", "fired")],
        )
    };

    for round in 0..2 {
        let paused = amqp_control(&t, "pause").await?;
        ensure!(paused["paused"] == true, "{paused}");
        for i in 0..200 {
            rabbit
                .publish_event(&json!({"errorCode": "QUEUED", "severity": "low", "serviceName": "producer", "message": format!("{round}/{i}")}))
                .await?;
        }
        if round == 0 {
            let a = frame(&mut ws, &mut seen, "TOCSIN_AMQP_BACKLOG", "alert", "tocsin").await?;
            ensure!(
                a["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains("wait in RabbitMQ queue")),
                "{a}"
            );
            // Nothing consumed while messages wait: the consumer lags.
            let lag = frame(&mut ws, &mut seen, "TOCSIN_AMQP_LAG", "alert", "tocsin").await?;
            ensure!(lag["severity"] == "critical", "{lag}");
        } else {
            // The same condition again within 5 minutes: an event, no alert.
            wait_for("the second backlog event", WAIT, || async {
                Ok(fired().await? >= 2.0)
            })
            .await?;
        }
        amqp_control(&t, "resume").await?;
        wait_for("the queue drained", WAIT, || async {
            Ok(rabbit.ready(&rabbit.queue).await? == 0)
        })
        .await?;
        if round == 0 {
            frame(
                &mut ws,
                &mut seen,
                "TOCSIN_AMQP_BACKLOG",
                "resolved",
                "tocsin",
            )
            .await?;
            frame(&mut ws, &mut seen, "TOCSIN_AMQP_LAG", "resolved", "tocsin").await?;
        }
    }
    // The second resolution ends no alert (none fired): dropped.
    wait_for("the second resolution, dropped", WAIT, || async {
        Ok(t.metric(
            "tocsin_resolutions_dropped_total",
            &[("rule", "tocsin-self")],
        )
        .await?
            >= 1.0)
    })
    .await?;
    while let Ok(f) = ws.next(Duration::from_millis(500)).await {
        seen.push(f);
    }
    let alerts = seen
        .iter()
        .filter(|f| code(f) == "TOCSIN_AMQP_BACKLOG" && f["type"] == "alert")
        .count();
    ensure!(
        alerts == 1,
        "one backlog alert in 5 minutes, not {alerts}: {seen:?}"
    );
    ensure!(fired().await? == 2.0, "two backlog events");
    rabbit.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn redis_paused_degrades_the_state_and_recovers() -> Result<()> {
    let _turn = REDIS_PAUSE.lock().await;
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    let env = vec![
        (
            "TOCSIN_REDIS_URL".to_string(),
            "redis://127.0.0.1:6379".to_string(),
        ),
        ("TOCSIN_REDIS_PREFIX".to_string(), prefix),
        (
            "TOCSIN_REDIS_OUTAGE_AFTER_MS".to_string(),
            "1000".to_string(),
        ),
    ];
    let t = Tocsin::start(setup(vec![], env)?).await?;
    let mut ws = t.ws("").await?;
    let mut seen = Vec::new();
    let paused = Command::new("redis-cli")
        .args(["-p", "6379", "CLIENT", "PAUSE", "6000", "ALL"])
        .output()?;
    ensure!(
        paused.status.success(),
        "redis-cli CLIENT PAUSE: {}",
        String::from_utf8_lossy(&paused.stderr)
    );
    // Traffic meets the pause: the state degrades.
    t.send("BUSY", "app", 1, "during the pause").await?;
    let a = frame(
        &mut ws,
        &mut seen,
        "TOCSIN_STATE_DEGRADED",
        "alert",
        "tocsin",
    )
    .await?;
    ensure!(a["severity"] == "critical", "{a}");
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_STATE_DEGRADED",
        "resolved",
        "tocsin",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_refusing_smtp_server_and_a_trapping_plugin_alert_once_and_resolve() -> Result<()> {
    let rabbit = Rabbit::new("watchdlq").await?;
    let port = tocsin_tests::free_port()?;
    let mut smtp = SmtpSink::stopped(port)?;
    let mut env = rabbit.env();
    env.extend(
        [
            ("TOCSIN_AMQP_MAX_RETRIES", "0"),
            ("TOCSIN_AMQP_RECOVERY", "false"),
            ("TOCSIN_WATCH_PLUGIN_ERRORS", "1"),
            ("TOCSIN_DELIVERY_ATTEMPTS", "1"),
            ("TOCSIN_SMTP_HOST", "127.0.0.1"),
            ("TOCSIN_SMTP_FROM", "tocsin@example.com"),
            ("TOCSIN_SMTP_TO", "ops@example.com"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env.push(("TOCSIN_SMTP_PORT".into(), port.to_string()));
    let panics = |aggregate: &str| {
        format!("[match]\ncodes = [\"PANIC_TEST\"]\n[aggregate]\n{aggregate}\n[[channels]]\nplugin = \"websocket\"\n")
    };
    let fixed = "plugin = \"threshold\"\nconfig = { threshold = 1, window = \"1h\" }";
    let mail = "[match]\ncodes = [\"MAIL_TEST\"]\n[aggregate]\nplugin = \"threshold\"\nconfig = { threshold = 1, window = \"1h\" }\n[[channels]]\nplugin = \"email\"\ngrants = { email = [\"default\"] }\n";
    let rules = vec![
        ("panics.toml".to_string(), panics("plugin = \"panic\"")),
        ("mail.toml".to_string(), mail.to_string()),
    ];
    let t = Tocsin::start(setup_with(rules, env, &["panic"])?).await?;
    wait_for("the consumer", WAIT, || async {
        Ok(t.get_json("/readyz").await?["amqp"]["connected"] == true)
    })
    .await?;
    let mut ws = t.ws("").await?;
    let mut seen = Vec::new();

    // A plugin that traps: its event is dead-lettered in RabbitMQ.
    rabbit
        .publish_event(&json!({"errorCode": "PANIC_TEST", "severity": "high", "serviceName": "svc", "message": "panic now", "eventId": "p-1"}))
        .await?;
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_PLUGIN_FAILING",
        "alert",
        "tocsin/panics",
    )
    .await?;
    let dead = frame(
        &mut ws,
        &mut seen,
        "TOCSIN_AMQP_DEAD_LETTERS",
        "alert",
        "tocsin",
    )
    .await?;
    ensure!(
        dead["summary"]
            .as_str()
            .is_some_and(|s| s.contains("tocsin dlq")),
        "{dead}"
    );

    // An email to a server that refuses: dead after its one attempt. The
    // self alert's own email dies too, and raises nothing more.
    t.send("MAIL_TEST", "billing", 1, "mail me").await?;
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_DELIVERY_DEAD",
        "alert",
        "tocsin/email",
    )
    .await?;
    wait_for("the self alert's email dead as well", WAIT, || async {
        let v = t.get_json("/v1/deliveries?status=dead").await?;
        Ok(v["deliveries"].as_array().map_or(0, Vec::len) >= 2)
    })
    .await?;

    // Fixed: the SMTP server is up, the rule works, both are replayed.
    smtp.run().await?;
    t.write_rule("panics.toml", &panics(fixed))?;
    wait_for("the fixed rule loaded", WAIT, || async {
        Ok(t.rule_status("panics").await?["aggregate"] == "threshold")
    })
    .await?;
    let replayed = t
        .http
        .post(t.url("/v1/amqp/dead/replay"))
        .json(&json!({"all": true}))
        .send()
        .await?;
    ensure!(
        replayed.status().is_success(),
        "amqp replay: {}",
        replayed.status()
    );
    let replayed = t.http.post(t.url("/v1/deliveries/replay")).send().await?;
    ensure!(
        replayed.status().is_success(),
        "replay: {}",
        replayed.status()
    );
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_DELIVERY_DEAD",
        "resolved",
        "tocsin/email",
    )
    .await?;
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_AMQP_DEAD_LETTERS",
        "resolved",
        "tocsin",
    )
    .await?;
    // A minute without errors clears the failing plugin.
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_PLUGIN_FAILING",
        "resolved",
        "tocsin/panics",
    )
    .await?;
    let dead_alerts = seen
        .iter()
        .filter(|f| code(f) == "TOCSIN_DELIVERY_DEAD" && f["type"] == "alert")
        .count();
    ensure!(
        dead_alerts == 1,
        "one dead-delivery alert, not {dead_alerts}: {seen:?}"
    );
    wait_for("the email delivered after the replay", WAIT, || async {
        Ok(smtp
            .messages()?
            .iter()
            .any(|m| m["text"].as_str().is_some_and(|s| s.contains("mail me"))))
    })
    .await?;
    rabbit.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn redis_answering_slowly_makes_processing_slow_and_it_clears() -> Result<()> {
    let _turn = REDIS_PAUSE.lock().await;
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("TOCSIN_REDIS_URL", "redis://127.0.0.1:6379"),
        ("TOCSIN_REDIS_PREFIX", prefix.as_str()),
        // Slow, not an outage: tocsin waits for Redis.
        ("TOCSIN_REDIS_OUTAGE_AFTER_MS", "30000"),
        ("TOCSIN_WATCH_P95_MS", "500"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    let t = Tocsin::start(setup(vec![], env)?).await?;
    let mut ws = t.ws("").await?;
    let mut seen = Vec::new();
    let paused = Command::new("redis-cli")
        .args(["-p", "6379", "CLIENT", "PAUSE", "2500", "WRITE"])
        .output()?;
    ensure!(paused.status.success(), "redis-cli CLIENT PAUSE failed");
    // Thirty events meet the pause: each waits for its commit.
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"errorCode": "SLOW", "severity": "low", "serviceName": format!("s{i}"), "message": "x"}))
        .collect();
    let (status, body) = t.post_events(&Value::Array(events)).await?;
    ensure!(status == 202, "{status} {body}");
    let slow = frame(
        &mut ws,
        &mut seen,
        "TOCSIN_PROCESSING_SLOW",
        "alert",
        "tocsin",
    )
    .await?;
    ensure!(
        slow["summary"]
            .as_str()
            .is_some_and(|s| s.contains("target 500 ms")),
        "{slow}"
    );
    // Within a minute the slow events leave the window.
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_PROCESSING_SLOW",
        "resolved",
        "tocsin",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_plugin_holding_the_worker_backs_up_the_pipeline_queue_and_it_clears() -> Result<()> {
    let spins = "[match]\ncodes = [\"SPIN\"]\n[aggregate]\nplugin = \"spin\"\n[[channels]]\nplugin = \"websocket\"\n";
    let env = [
        ("TOCSIN_SANDBOX_CALL_TIMEOUT_MS", "3000"),
        ("TOCSIN_WATCH_QUEUE_DEPTH", "5"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    let rules = vec![("spins.toml".to_string(), spins.to_string())];
    let t = Tocsin::start(setup_with(rules, env, &["spin"])?).await?;
    let mut ws = t.ws("").await?;
    let mut seen = Vec::new();
    // One worker, held by a plugin call that runs to its 3 s deadline;
    // thirty requests queue up behind it.
    let mut posts = Vec::new();
    for i in 0..31 {
        let code = if i == 0 { "SPIN" } else { "WAITING" };
        let body = json!({"errorCode": code, "severity": "low", "serviceName": format!("s{i}"), "message": "spin"});
        let (http, url) = (t.http.clone(), t.url("/v1/events"));
        posts.push(tokio::spawn(async move {
            http.post(url).json(&body).send().await.map(|r| r.status())
        }));
        if i == 0 {
            // Only an order: the worker, idle, takes the first job at
            // once; the rest then arrive while it is held.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let backlog = frame(
        &mut ws,
        &mut seen,
        "TOCSIN_QUEUE_BACKLOG",
        "alert",
        "tocsin",
    )
    .await?;
    ensure!(
        backlog["summary"]
            .as_str()
            .is_some_and(|s| s.contains("wait in the pipeline's queue")),
        "{backlog}"
    );
    for p in posts {
        let status = p.await??;
        ensure!(
            status == 202,
            "every request accepted once the worker is free: {status}"
        );
    }
    frame(
        &mut ws,
        &mut seen,
        "TOCSIN_QUEUE_BACKLOG",
        "resolved",
        "tocsin",
    )
    .await?;
    Ok(())
}
