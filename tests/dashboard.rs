//! The admin page in a real browser: Chromium, driven by Playwright
//! (`tests/browser/dashboard.cjs`), opens `/` with the admin token, sees a
//! critical event arrive on the live feed coloured as such, filters it
//! away and back, acknowledges it, makes a silence from it ("silence like
//! this", matchers prefilled), finds the alert acknowledged and silenced,
//! and the rules tab shows the broken rule file's error and each rule's
//! events and alerts of the day; times post → feed row; opens the alert's
//! trace, watches the overview's top codes follow new events, replays a
//! dead webhook delivery (a real receiver that refused once), finds it in
//! the history, and floods the live page with 5,000 notifications in 30 s
//! (twice 5,000 a minute), measuring its frames. Screenshots of each page
//! at 1280×800 land in `target/screenshots/`. This side checks what the
//! clicks did: the acknowledgement and the silence by `playwright`, in the
//! audit log too, the replayed webhook received; and that the page is in
//! the binary.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use tocsin_tests::peers::WebhookReceiver;
use tocsin_tests::{record_figure, root, Setup, Tocsin};

const TOKEN: &str = "s3cret-admin";

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

const FLOOD: &str = r#"
[match]
codes = ["FLOOD", "LATENCY_*"]
[aggregate]
plugin = "threshold"
config = { threshold = 1, window = "1h", samples = 1 }
[[channels]]
plugin = "websocket"
grants = { websocket = true }
"#;

fn target() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn node_modules() -> std::path::PathBuf {
    target().join("browser").join("node_modules")
}

#[tokio::test]
async fn the_admin_page_shows_the_feed_and_acts_in_a_real_browser() -> Result<()> {
    // Refuses the first delivery (dead at once: one attempt), takes the replay.
    let hook = WebhookReceiver::start(&[500], 200).await?;
    let hooks = hook.rule("HOOK_FAIL", 1);
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket", "webhook"],
        default_rules: false,
        rules: vec![
            ("disks.toml".into(), RULE.into()),
            ("hooks.toml".into(), hooks),
            ("flood.toml".into(), FLOOD.into()),
            (
                "broken.toml".into(),
                "[aggregate]\nplugin = \"nope\"\n".into(),
            ),
        ],
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_HTTP_ADMIN_TOKEN".into(), TOKEN.into()),
            ("TOCSIN_ENGINE_STATS_FLUSH_MS".into(), "500".into()),
        ],
        ..Setup::default()
    })
    .await?;
    let page = t.http.get(t.url("/")).send().await?;
    ensure!(page.status() == 200, "{}", page.status());
    ensure!(
        page.text().await?.contains("<title>tocsin</title>"),
        "the page"
    );

    let modules = node_modules();
    ensure!(
        modules.join("playwright-core").is_dir(),
        "{} has no playwright-core: run the tests with `cargo xtask test` (it installs it)",
        modules.display()
    );
    t.send("HOOK_FAIL", "billing", 1, "the webhook refuses")
        .await?;
    let shots = target().join("screenshots");
    std::fs::create_dir_all(&shots)?;
    let script = root().join("tests/browser/dashboard.cjs");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .args([&t.base, TOKEN])
        .arg(&shots)
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(400), cmd.output())
        .await
        .map_err(|_| anyhow!("the browser script did not finish within 400 s"))?
        .context("starting node (installed with the machine; `cargo xtask test` checks it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("\"ok\":true"),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let line = stdout
        .lines()
        .find(|l| l.contains("\"ok\":true"))
        .unwrap_or("");
    let report: serde_json::Value = serde_json::from_str(line)?;
    record_figure(&format!("dashboard flood: {}", report["flood"]));
    record_figure(&format!(
        "dashboard post → feed row, ms: {}",
        report["feedMs"]
    ));
    for page in ["live", "overview", "alerts", "rules", "deliveries", "trace"] {
        let shot = shots.join(format!("{page}.png"));
        ensure!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
            "screenshot {}",
            shot.display()
        );
    }
    // The replay reached the receiver: refused once, then taken.
    let got: Vec<u16> = hook.received().iter().map(|r| r.status).collect();
    ensure!(got == [500, 200], "the webhook saw {got:?}");

    // What the clicks did, seen from the server.
    let auth = |path: &str| t.http.get(t.url(path)).bearer_auth(TOKEN).send();
    let alerts: serde_json::Value = auth("/api/v2/alerts?silenced=true").await?.json().await?;
    let disk = alerts
        .as_array()
        .and_then(|a| a.iter().find(|a| a["receivers"][0]["name"] == "disks"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        disk["acknowledged"]["by"] == "playwright"
            && disk["status"]["silencedBy"].as_array().map(Vec::len) == Some(1),
        "{disk}"
    );
    let silences: serde_json::Value = auth("/api/v2/silences").await?.json().await?;
    let s = &silences[0];
    ensure!(
        s["createdBy"] == "playwright"
            && s["comment"] == "disk replaced tonight"
            && s["matchers"].as_array().is_some_and(|m| m
                .iter()
                .any(|m| m["name"] == "service" && m["value"] == "db")),
        "{silences}"
    );
    let audit: serde_json::Value = auth("/v1/audit").await?.json().await?;
    let by_playwright = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["actor"] == "playwright")
        .count();
    ensure!(
        by_playwright == 3,
        "the ack, the silence and the replay, by playwright: {audit}"
    );
    // The silence made in the page mutes the next matching alert (once
    // the acknowledgement, which mutes first, is taken back).
    let unack = t
        .http
        .delete(t.url(&format!(
            "/v1/alerts/{}/ack",
            disk["fingerprint"].as_str().unwrap_or("")
        )))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    ensure!(unack.status().is_success(), "un-ack: {}", unack.status());
    let muted = || t.metric("tocsin_alerts_silenced_total", &[("rule", "disks")]);
    let before = muted().await?;
    let (status, body) = t
        .post_events(
            &serde_json::json!({"errorCode": "DISK_FULL", "severity": "critical",
            "serviceName": "db", "message": "disk full again"}),
        )
        .await?;
    ensure!(status == 202, "{status} {body}");
    tocsin_tests::wait_for(
        "the next DISK_FULL alert muted by the page's silence",
        Duration::from_secs(30),
        || async { Ok(muted().await? > before) },
    )
    .await?;

    Ok(())
}
