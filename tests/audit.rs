//! The audit log: a silence added with the real `tocsin silence` CLI (as
//! user alice), an acknowledgement (by ann, in its body) and a silence
//! expired by the real `amtool` (who does not say who) are listed by
//! `GET /v1/audit`, newest first, with who, what and the answer; reads are
//! not recorded; the log survives a restart.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::{json, Value};
use tocsin_tests::{binary, Setup, Tocsin, Ws};

const WAIT: Duration = Duration::from_secs(20);

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

async fn run(cmd: &mut tokio::process::Command, what: &str) -> Result<String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .map_err(|_| anyhow!("{what} did not finish within {WAIT:?}"))?
        .with_context(|| format!("starting {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn fired(t: &Tocsin, ws: &mut Ws) -> Result<String> {
    t.send("DISK_FULL", "db", 1, "disk full").await?;
    ws.next(WAIT).await?;
    let alerts = t.get_json("/api/v2/alerts").await?;
    alerts[0]["fingerprint"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no active alert: {alerts}"))
}

#[tokio::test]
async fn operator_actions_are_recorded_with_who_and_what() -> Result<()> {
    let mut t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        rules: vec![("disks.toml".into(), RULE.into())],
        ..Setup::default()
    })
    .await?;
    let mut ws = t.ws("").await?;
    let fp = fired(&t, &mut ws).await?;

    let out = run(
        tokio::process::Command::new(binary()?)
            .args(["silence", "add", "service=other", "-m", "db maintenance"])
            .args(["--url", &t.base])
            .env("USER", "alice"),
        "tocsin silence add",
    )
    .await?;
    let id = out
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    ensure!(!id.is_empty(), "{out}");
    let r = t
        .http
        .post(t.url(&format!("/v1/alerts/{fp}/ack")))
        .json(&json!({"by": "ann", "comment": "on it"}))
        .send()
        .await?;
    ensure!(r.status() == 200, "{}", r.status());
    // Reads are not actions.
    t.get_json("/api/v2/silences").await?;
    run(
        tokio::process::Command::new("amtool")
            .arg(format!("--alertmanager.url={}", t.base))
            .args(["silence", "expire", &id])
            .env("HOME", std::env::temp_dir()),
        "amtool silence expire",
    )
    .await?;

    let check = |log: &Value| -> Result<()> {
        let e = log["entries"].as_array().ok_or_else(|| anyhow!("{log}"))?;
        ensure!(e.len() == 3, "three actions: {log}");
        ensure!(
            e[0]["action"] == format!("DELETE /api/v2/silence/{id}")
                && e[0]["actor"] == "unknown"
                && e[0]["status"] == 200,
            "{}",
            e[0]
        );
        ensure!(
            e[1]["action"] == format!("POST /v1/alerts/{fp}/ack")
                && e[1]["actor"] == "ann"
                && e[1]["request"]["comment"] == "on it",
            "{}",
            e[1]
        );
        ensure!(
            e[2]["action"] == "POST /api/v2/silences"
                && e[2]["actor"] == "alice"
                && e[2]["answer"]["silenceID"] == id
                && e[2]["request"]["comment"] == "db maintenance",
            "{}",
            e[2]
        );
        Ok(())
    };
    check(&t.get_json("/v1/audit").await?)?;
    t.stop()?;
    t.spawn().await?;
    check(&t.get_json("/v1/audit").await?)?;
    let one = t.get_json("/v1/audit?limit=1").await?;
    ensure!(one["entries"].as_array().map(Vec::len) == Some(1), "{one}");
    Ok(())
}
