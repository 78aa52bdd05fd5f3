//! Silences and active alerts through the real `amtool`: a silence mutes
//! the alerts it matches (recorded, not notified), survives a restart, is
//! honoured by every instance sharing Redis, and once expired the next
//! alert notifies; `amtool alert query` lists what is firing, suppressed
//! or not, until it resolves.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;
use tocsin_tests::{wait_for, Setup, Tocsin, Ws};

const WAIT: Duration = Duration::from_secs(20);

/// One rule, an alert per event (threshold 1), to the WebSocket.
const RULE: &str = r#"
[match]
codes = ["DEVICE_START_FAILED"]
[aggregate]
plugin = "threshold"
config = { threshold = 1, window = "1s", key = ["error-code", "service-name"] }
[[channels]]
plugin = "websocket"
grants = { websocket = true }
"#;

fn setup(env: Vec<(String, String)>) -> Setup {
    let mut base = Setup::default().env;
    base.extend(env);
    Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        rules: vec![("devices.toml".into(), RULE.into())],
        env: base,
        ..Setup::default()
    }
}

/// `amtool ARGS` against `t`; its stdout, or an error with its output.
async fn amtool(t: &Tocsin, args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new("amtool");
    cmd.arg(format!("--alertmanager.url={}", t.base))
        .args(args)
        // No ~/.config/prometheus/amtool.yml of the machine's user.
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .map_err(|_| anyhow!("amtool {args:?} did not finish within {WAIT:?}"))?
        .context("starting amtool (installed by `cargo xtask test`)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "amtool {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Posts one DEVICE_START_FAILED event of `service` with id `id`.
async fn post(t: &Tocsin, id: &str, service: &str) -> Result<()> {
    let mut e = tocsin_tests::event("DEVICE_START_FAILED", "high", service, id);
    e["eventId"] = id.into();
    let (status, body) = t.post_events(&e).await?;
    ensure!(status == 202, "{status}: {body}");
    Ok(())
}

/// The stages event `id` went through, once its trace has `stage`.
async fn stages_once(t: &Tocsin, id: &str, stage: &str) -> Result<Value> {
    let path = format!("/v1/events/{id}/trace");
    wait_for(&format!("{id} to be {stage}"), WAIT, || async {
        let r = t.http.get(t.url(&path)).send().await?;
        Ok(r.status() == 200 && r.text().await?.contains(&format!("\"stage\":\"{stage}\"")))
    })
    .await?;
    t.get_json(&path).await
}

/// Posts a muted event and a control one (another service); waits for the
/// control's frame and checks no frame of the muted one came before it,
/// and that the muted one's trace says which silence muted it.
async fn muted(t: &Tocsin, ws: &mut Ws, id: &str, silence: &str) -> Result<()> {
    post(t, id, "device-service").await?;
    let trace = stages_once(t, id, "silenced").await?;
    ensure!(trace.to_string().contains(silence), "{trace}");
    let control = format!("{id}-control");
    post(t, &control, "other-service").await?;
    loop {
        let frame = ws.next(WAIT).await?;
        let text = frame.to_string();
        ensure!(
            !text.contains("device-service"),
            "a muted alert was notified: {frame}"
        );
        if text.contains("other-service") {
            return Ok(());
        }
    }
}

#[tokio::test]
async fn amtool_silences_mute_survive_a_restart_and_expire() -> Result<()> {
    let mut t = Tocsin::start(setup(Vec::new())).await?;
    let mut ws = t.ws("").await?;
    let id = amtool(
        &t,
        &[
            "silence",
            "add",
            "service=device-service",
            "-c",
            "deploying",
            "-a",
            "ops",
            "-d",
            "2h",
        ],
    )
    .await?
    .trim()
    .to_string();
    ensure!(!id.is_empty(), "amtool printed no silence id");
    let listed = amtool(&t, &["silence", "query", "-o", "json"]).await?;
    let listed: Value = serde_json::from_str(&listed)?;
    ensure!(listed[0]["id"] == id.as_str(), "{listed}");
    ensure!(listed[0]["status"]["state"] == "active", "{listed}");
    ensure!(listed[0]["createdBy"] == "ops", "{listed}");

    muted(&t, &mut ws, "muted-1", &id).await?;
    // Counted and recorded: the history shows the alert and its silence.
    let history = t.get_json("/v1/notifications?rule=devices").await?;
    let silenced: Vec<&Value> = history["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["alert"]["silencedBy"][0] == id.as_str())
        .collect();
    ensure!(silenced.len() == 1, "{history}");
    ensure!(
        silenced[0]["deliveries"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{history}"
    );
    let n = t
        .metric("tocsin_alerts_silenced_total", &[("rule", "devices")])
        .await?;
    ensure!(n == 1.0, "tocsin_alerts_silenced_total {n}");

    // A restart keeps it.
    t.stop()?;
    t.spawn().await?;
    let mut ws = t.ws("").await?;
    let listed = amtool(&t, &["silence", "query", "-q"]).await?;
    ensure!(listed.trim() == id, "after a restart: {listed:?}");
    muted(&t, &mut ws, "muted-2", &id).await?;

    // Expired: the next alert notifies.
    amtool(&t, &["silence", "expire", &id]).await?;
    let active = amtool(&t, &["silence", "query", "-q"]).await?;
    ensure!(
        active.trim().is_empty(),
        "expired, still active: {active:?}"
    );
    let expired = amtool(&t, &["silence", "query", "--expired", "-q"]).await?;
    ensure!(expired.trim() == id, "{expired:?}");
    post(&t, "after-expiry", "device-service").await?;
    let frame = ws.next(WAIT).await?;
    ensure!(frame.to_string().contains("device-service"), "{frame}");
    Ok(())
}

/// A silence's API body with `matcher` (plus `id`, when given).
fn silence_body(matcher: Value, id: Option<&str>) -> Value {
    let mut body = serde_json::json!({
        "matchers": [matcher],
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "t", "comment": "c"
    });
    if let Some(id) = id {
        body["id"] = id.into();
    }
    body
}

#[tokio::test]
async fn bad_silences_are_refused_with_the_reason() -> Result<()> {
    let t = Tocsin::start(setup(Vec::new())).await?;
    let post = |body: Value| {
        let http = t.http.clone();
        let url = t.url("/api/v2/silences");
        async move {
            let r = http.post(url).json(&body).send().await?;
            Ok::<_, anyhow::Error>((r.status().as_u16(), r.text().await?))
        }
    };
    let everything = silence_body(
        serde_json::json!({"name": "service", "value": ".*", "isRegex": true}),
        None,
    );
    let (status, body) = post(everything).await?;
    ensure!(
        status == 400 && body.contains("empty string"),
        "{status} {body}"
    );
    let bad_regex = silence_body(
        serde_json::json!({"name": "service", "value": "(", "isRegex": true}),
        None,
    );
    let (status, body) = post(bad_regex).await?;
    ensure!(
        status == 400 && body.contains("invalid regex"),
        "{status} {body}"
    );
    let unknown = silence_body(
        serde_json::json!({"name": "service", "value": "db"}),
        Some("no-such-silence"),
    );
    let (status, body) = post(unknown).await?;
    ensure!(
        status == 404 && body.contains("not found"),
        "{status} {body}"
    );
    let r = t
        .http
        .delete(t.url("/api/v2/silence/no-such-silence"))
        .send()
        .await?;
    ensure!(r.status() == 404, "{}", r.status());
    // Nothing was kept.
    let all = t.get_json("/api/v2/silences").await?;
    ensure!(all.as_array().is_some_and(Vec::is_empty), "{all}");
    Ok(())
}

/// Three instances sharing Redis, as in the cluster test: a silence made
/// through one mutes on the other two, the alert it muted there is listed
/// here, and its expiry there is seen here.
#[tokio::test]
async fn a_silence_on_one_instance_mutes_on_every_instance_sharing_redis() -> Result<()> {
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    let env = vec![
        (
            "TOCSIN_REDIS_URL".to_string(),
            "redis://127.0.0.1:6379".to_string(),
        ),
        ("TOCSIN_REDIS_PREFIX".to_string(), prefix),
    ];
    let a = Tocsin::start(setup(env.clone())).await?;
    let b = Tocsin::start(setup(env.clone())).await?;
    let c = Tocsin::start(setup(env)).await?;
    let id = amtool(
        &a,
        &[
            "silence",
            "add",
            "service=device-service",
            "-c",
            "db maintenance",
        ],
    )
    .await?
    .trim()
    .to_string();
    // Listed by the other instance within its refresh.
    wait_for("the silence listed by the other instance", WAIT, || async {
        Ok(amtool(&b, &["silence", "query", "-q"]).await?.trim() == id)
    })
    .await?;
    wait_for("the silence listed by the third instance", WAIT, || async {
        Ok(amtool(&c, &["silence", "query", "-q"]).await?.trim() == id)
    })
    .await?;
    let mut ws = b.ws("").await?;
    muted(&b, &mut ws, "b-muted", &id).await?;
    let mut ws_c = c.ws("").await?;
    muted(&c, &mut ws_c, "c-muted", &id).await?;
    // The alert b fired is active in Redis: the first instance lists it,
    // suppressed by the silence.
    let listed = queried(&a, &["-s"]).await?;
    ensure!(
        listed
            == vec![(
                "device-service".into(),
                "suppressed".into(),
                serde_json::json!([id])
            )],
        "{listed:?}"
    );
    amtool(&b, &["silence", "expire", &id]).await?;
    for (t, which) in [(&a, "first"), (&c, "third")] {
        wait_for(
            &format!("the expiry seen by the {which} instance"),
            WAIT,
            || async {
                Ok(amtool(t, &["silence", "query", "-q"])
                    .await?
                    .trim()
                    .is_empty())
            },
        )
        .await?;
    }
    Ok(())
}

/// With `[http] admin_token`: the views and actions refuse requests
/// without it (a header, or `?token=` on the WebSocket), probes stay
/// open, and `amtool` needs it for silences (its HTTP config file).
#[tokio::test]
async fn the_admin_token_guards_views_actions_and_silences() -> Result<()> {
    const TOKEN: &str = "admin-s3cret";
    let t = Tocsin::start(setup(vec![(
        "TOCSIN_HTTP_ADMIN_TOKEN".to_string(),
        TOKEN.to_string(),
    )]))
    .await?;
    for path in [
        "/v1/rules",
        "/v1/notifications",
        "/v1/deliveries",
        "/v1/events/x/trace",
    ] {
        let r = t.http.get(t.url(path)).send().await?;
        ensure!(
            r.status() == 401,
            "GET {path} without the token: {}",
            r.status()
        );
        let r = t.http.get(t.url(path)).bearer_auth(TOKEN).send().await?;
        ensure!(
            r.status() != 401,
            "GET {path} with the token: {}",
            r.status()
        );
    }
    let r = t.http.post(t.url("/v1/deliveries/replay")).send().await?;
    ensure!(
        r.status() == 401,
        "replay without the token: {}",
        r.status()
    );
    for path in ["/healthz", "/metrics"] {
        let r = t.http.get(t.url(path)).send().await?;
        ensure!(r.status() == 200, "{path} stays open: {}", r.status());
    }
    // The live stream: refused without, served with `?token=`.
    let ws = format!("ws://{}/v1/ws", t.base.trim_start_matches("http://"));
    ensure!(
        tokio_tungstenite::connect_async(ws.as_str()).await.is_err(),
        "ws without the token"
    );
    let (_stream, _) = tokio_tungstenite::connect_async(format!("{ws}?token={TOKEN}")).await?;

    // amtool: refused without the token, works with it.
    let args = ["silence", "add", "service=db", "-c", "maintenance"];
    ensure!(
        amtool(&t, &args).await.is_err(),
        "amtool silence add without the token"
    );
    let dir = tocsin_tests::TempDir::new("amtool-admin")?;
    let config = dir.path().join("http.yml");
    std::fs::write(
        &config,
        format!("authorization:\n  type: Bearer\n  credentials: {TOKEN}\n"),
    )?;
    let flag = format!("--http.config.file={}", config.display());
    let mut with = vec![flag.as_str()];
    with.extend(args);
    let id = amtool(&t, &with).await?;
    ensure!(!id.trim().is_empty(), "no silence id");
    Ok(())
}

/// A listen address other machines can reach, with no ingest and admin
/// tokens: `tocsin run` refuses to start, and says what to set (it never
/// binds, so nothing listens beyond loopback here).
#[tokio::test]
async fn an_unguarded_reachable_listen_refuses_to_start() -> Result<()> {
    let dir = tocsin_tests::TempDir::new("exposed")?;
    let out = tokio::process::Command::new(tocsin_tests::binary()?)
        .args(["run", "--listen", "0.0.0.0:1", "--data"])
        .arg(dir.path())
        .env_remove("TOCSIN_INGEST_TOKEN")
        .env_remove("TOCSIN_HTTP_ADMIN_TOKEN")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "it started: {stderr}");
    ensure!(
        stderr.contains("admin_token") && stderr.contains("--insecure"),
        "{stderr}"
    );
    Ok(())
}

/// The services `amtool alert query ARGS` lists, with each one's state
/// and silences, sorted.
async fn queried(t: &Tocsin, args: &[&str]) -> Result<Vec<(String, String, Value)>> {
    let mut all = vec!["-o", "json", "alert", "query"];
    all.extend_from_slice(args);
    let listed: Value = serde_json::from_str(&amtool(t, &all).await?)?;
    let mut out: Vec<(String, String, Value)> = listed
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["labels"]["service"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["status"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["status"]["silencedBy"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `amtool alert query` shows what is firing: an alert from an event and
/// one from Prometheus's path (`amtool alert add`), `suppressed` with its
/// silence under `-s` while silenced, both still firing after a restart,
/// and the Prometheus one gone once it resolves.
#[tokio::test]
async fn amtool_alert_query_shows_active_suppressed_and_resolved() -> Result<()> {
    let mut t = Tocsin::start(setup(vec![])).await?;
    post(&t, "fires-a", "device-a").await?;
    let labels = ["DEVICE_START_FAILED", "service=device-b", "severity=high"];
    let mut add = vec!["alert", "add"];
    add.extend_from_slice(&labels);
    amtool(&t, &add).await?;
    let firing = |s: &str| (s.to_string(), "active".to_string(), serde_json::json!([]));
    wait_for("both alerts listed", WAIT, || async {
        Ok(queried(&t, &[]).await? == vec![firing("device-a"), firing("device-b")])
    })
    .await?;

    let silence = amtool(
        &t,
        &[
            "silence",
            "add",
            "service=device-a",
            "-c",
            "known",
            "-d",
            "1h",
        ],
    )
    .await?;
    let silence = silence.trim();
    // amtool's default lists the active ones, -s the silenced, -a -s both.
    ensure!(queried(&t, &[]).await? == vec![firing("device-b")]);
    let with_silenced = queried(&t, &["-a", "-s"]).await?;
    ensure!(
        with_silenced
            == vec![
                (
                    "device-a".into(),
                    "suppressed".into(),
                    serde_json::json!([silence])
                ),
                firing("device-b")
            ],
        "{with_silenced:?}"
    );
    let only_a = queried(&t, &["-s", "service=device-a"]).await?;
    ensure!(only_a.len() == 1 && only_a[0].0 == "device-a", "{only_a:?}");

    // Kept across a restart (the silence too).
    t.stop()?;
    t.spawn().await?;
    ensure!(queried(&t, &["-a", "-s"]).await? == with_silenced);
    let mut ws = t.ws("").await?;

    // Prometheus resolves device-b (endsAt in the past): no longer firing.
    let ended =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60));
    let end = format!("--end={ended}");
    let mut resolve = add.clone();
    resolve.push(&end);
    amtool(&t, &resolve).await?;
    wait_for("device-b resolved", WAIT, || async {
        Ok(queried(&t, &["-a", "-s"]).await?.len() == 1)
    })
    .await?;
    ensure!(queried(&t, &["-a", "-s"]).await?[0].0 == "device-a");
    let n = ws.next(WAIT).await?;
    ensure!(
        n["labels"]["service"] == "device-b" && n["type"] == "resolved",
        "{n}"
    );
    // A resolution of what never fired (device-c) is not notified: the
    // next frame is the alert of device-d, sent after it.
    let mut c = vec![
        "alert",
        "add",
        "DEVICE_START_FAILED",
        "service=device-c",
        &end,
    ];
    c.push("severity=high");
    amtool(&t, &c).await?;
    post(&t, "fires-d", "device-d").await?;
    let n = ws.next(WAIT).await?;
    ensure!(
        n["labels"]["service"] == "device-d" && n["type"] != "resolved",
        "a resolution of an alert that never fired was notified: {n}"
    );
    let dropped = t
        .metric("tocsin_resolutions_dropped_total", &[("rule", "devices")])
        .await?;
    ensure!(dropped == 1.0, "tocsin_resolutions_dropped_total {dropped}");
    Ok(())
}

/// A rule's `resolve-after`: an alert that does not fire again stops
/// being active once it has passed.
#[tokio::test]
async fn an_alert_stops_being_active_after_resolve_after() -> Result<()> {
    let mut s = setup(vec![]);
    s.rules = vec![(
        "devices.toml".into(),
        format!("resolve-after = \"2s\"\n{RULE}"),
    )];
    let t = Tocsin::start(s).await?;
    post(&t, "quiet-1", "device-q").await?;
    ensure!(queried(&t, &[]).await?.len() == 1, "active once fired");
    wait_for("no longer active", WAIT, || async {
        Ok(queried(&t, &[]).await?.is_empty())
    })
    .await?;
    Ok(())
}
