//! Time intervals: a mute time covering now stops a rule's email but not
//! its WebSocket (the real SMTP server sees nothing for it, the other
//! rule's email arrives); edited so it no longer covers now, the email
//! goes out. A rule outside its `active-times` records its alert
//! (history `mutedBy`) and notifies nothing; a rule naming an undefined
//! interval is inactive, and says which.

use std::time::Duration;

use anyhow::{ensure, Result};
use tocsin_tests::peers::SmtpSink;
use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(20);

/// `always`: a range with no field covers every moment; `never`: a year
/// long gone.
const POLICY: &str = r#"
[[time-intervals.maintenance]]
[[time-intervals.never]]
years = ["2001"]
"#;

fn rule(code: &str, rule_extra: &str, email_extra: &str) -> String {
    format!(
        r#"
{rule_extra}
[match]
codes = ["{code}"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
[[channels]]
plugin = "websocket"
grants = {{ websocket = true }}
[[channels]]
plugin = "email"
grants = {{ email = ["default"] }}
{email_extra}
"#
    )
}

fn subjects(smtp: &SmtpSink) -> Result<Vec<String>> {
    Ok(smtp
        .messages()?
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect())
}

#[tokio::test]
async fn a_mute_time_stops_email_not_websocket() -> Result<()> {
    let smtp = SmtpSink::start(None).await?;
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket", "email"],
        default_rules: false,
        rules: vec![
            ("policy.toml".into(), POLICY.into()),
            (
                "disks.toml".into(),
                rule("DISK_FULL", "", "mute-times = [\"maintenance\"]"),
            ),
            (
                "cpu.toml".into(),
                rule("CPU_HOT", "", "mute-times = [\"never\"]"),
            ),
            (
                "quiet.toml".into(),
                rule("FAN_LOUD", "active-times = [\"never\"]", ""),
            ),
            (
                "typo.toml".into(),
                rule("X", "mute-times = [\"maintenence\"]", ""),
            ),
        ],
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
            ("TOCSIN_SMTP_HOST".into(), "127.0.0.1".into()),
            ("TOCSIN_SMTP_PORT".into(), smtp.port.to_string()),
            ("TOCSIN_SMTP_FROM".into(), "tocsin@example.com".into()),
            ("TOCSIN_SMTP_TO".into(), "ops@example.com".into()),
        ],
        ..Setup::default()
    })
    .await?;
    let typo = t.rule_status("typo").await?;
    ensure!(
        typo["active"] == false
            && typo["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("maintenence")),
        "{typo}"
    );
    let mut ws = t.ws("").await?;

    // DISK_FULL: on the stream, not by email; CPU_HOT: both.
    t.send("DISK_FULL", "db", 1, "disk full").await?;
    let n = ws.next(WAIT).await?;
    ensure!(n["labels"]["error-code"] == "DISK_FULL", "{n}");
    t.send("CPU_HOT", "db", 1, "cpu hot").await?;
    let n = ws.next(WAIT).await?;
    ensure!(n["labels"]["error-code"] == "CPU_HOT", "{n}");
    wait_for("the CPU_HOT email", WAIT, || async {
        Ok(subjects(&smtp)?.iter().any(|s| s.contains("CPU_HOT")))
    })
    .await?;
    ensure!(
        !subjects(&smtp)?.iter().any(|s| s.contains("DISK_FULL")),
        "{:?}",
        subjects(&smtp)?
    );
    let muted = t
        .metric(
            "tocsin_channel_muted_total",
            &[("rule", "disks"), ("channel", "email")],
        )
        .await?;
    ensure!(muted == 1.0, "tocsin_channel_muted_total {muted}");
    let deliveries = t.get_json("/v1/deliveries").await?;
    let emails = |rule: &str| {
        deliveries["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["rule"] == rule && d["channel"] == "email")
            .count()
    };
    ensure!(
        emails("disks") == 0 && emails("cpu") == 1,
        "an email delivery for cpu only: {deliveries}"
    );

    // Outside its active times: recorded, not notified (the barrier first).
    t.send("FAN_LOUD", "db", 1, "fan loud").await?;
    t.send("CPU_HOT", "barrier", 1, "after").await?;
    let n = ws.next(WAIT).await?;
    ensure!(n["labels"]["service"] == "barrier", "{n}");
    let history = t.get_json("/v1/notifications?rule=quiet").await?;
    ensure!(
        history.to_string().contains("outside active times"),
        "{history}"
    );

    // The window is over (edited to a year long gone): email again.
    let before = t.get_json("/v1/policies").await?["files"][0]["hash"].clone();
    ensure!(before.is_string(), "the policy file is listed");
    t.write_rule(
        "policy.toml",
        "[[time-intervals.maintenance]]\nyears = [\"2002\"]\n[[time-intervals.never]]\nyears = [\"2001\"]\n",
    )?;
    wait_for("the edited policy serving", WAIT, || async {
        let p = t.get_json("/v1/policies").await?;
        Ok(p["files"][0]["hash"] != before && p["files"][0]["last_error"].is_null())
    })
    .await?;
    t.send("DISK_FULL", "db2", 1, "disk full again").await?;
    wait_for("the DISK_FULL email", WAIT, || async {
        Ok(subjects(&smtp)?.iter().any(|s| s.contains("DISK_FULL")))
    })
    .await?;
    Ok(())
}
