//! The admin page in a real browser: Chromium, driven by Playwright
//! (`tests/browser/dashboard.cjs`), opens `/` with the admin token, sees a
//! critical event arrive on the live feed coloured as such, filters it
//! away and back, acknowledges it, makes a silence from it ("silence like
//! this", matchers prefilled), finds the alert acknowledged and silenced,
//! and the rules tab shows the broken rule file's error. This side checks
//! what the clicks did: the acknowledgement and the silence by
//! `playwright`, in the audit log too; and that the page is in the binary.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use tocsin_tests::{root, Setup, Tocsin};

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

fn node_modules() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("browser").join("node_modules")
}

#[tokio::test]
async fn the_admin_page_shows_the_feed_and_acts_in_a_real_browser() -> Result<()> {
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        rules: vec![
            ("disks.toml".into(), RULE.into()),
            (
                "broken.toml".into(),
                "[aggregate]\nplugin = \"nope\"\n".into(),
            ),
        ],
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_HTTP_ADMIN_TOKEN".into(), TOKEN.into()),
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
    let script = root().join("tests/browser/dashboard.cjs");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .args([&t.base, TOKEN])
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| anyhow!("the browser script did not finish within 120 s"))?
        .context("starting node (installed with the machine; `cargo xtask test` checks it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("\"ok\":true"),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What the clicks did, seen from the server.
    let auth = |path: &str| t.http.get(t.url(path)).bearer_auth(TOKEN).send();
    let alerts: serde_json::Value = auth("/api/v2/alerts?silenced=true").await?.json().await?;
    ensure!(
        alerts[0]["acknowledged"]["by"] == "playwright"
            && alerts[0]["status"]["silencedBy"].as_array().map(Vec::len) == Some(1),
        "{alerts}"
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
        by_playwright == 2,
        "the ack and the silence, by playwright: {audit}"
    );
    Ok(())
}
