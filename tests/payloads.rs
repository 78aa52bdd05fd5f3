//! The vendor payload plugins (slack, dingtalk, feishu, wecom, teams,
//! pagerduty) end to end: the real engine with one rule per plugin
//! (threshold 1), a real HTTP receiver standing in for the vendor, and
//! assertions on the JSON each vendor documents. Signatures are checked by
//! recomputing them with Python's `hmac` module, an implementation
//! independent of the plugins' Rust crates.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tocsin_tests::peers::{Received, WebhookReceiver};
use tocsin_tests::{event, wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(20);

/// A PagerDuty integration key has 32 letters and digits.
const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

/// One `[[channels]]` entry of `plugin` named `name`, posting to `url`
/// (granted: 127.0.0.1), with `config` as extra inline-table entries.
fn channel(plugin: &str, name: &str, url: &str, config: &str) -> String {
    format!(
        r#"
[[channels]]
name = "{name}"
plugin = "{plugin}"
config = {{ url = "{url}"{config} }}
grants = {{ http = ["127.0.0.1"] }}
retry = {{ attempts = 3, base = "100ms" }}
"#
    )
}

/// A rule alerting on every `code` event, delivered by `channels`.
fn rule(code: &str, channels: &[String]) -> String {
    format!(
        r#"
[match]
codes = ["{code}"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
{}"#,
        channels.concat()
    )
}

/// An engine with the threshold aggregator, `plugins` and the `rules`.
async fn engine(plugins: &[&'static str], rules: &[(&str, String)]) -> Result<Tocsin> {
    let mut all = vec!["threshold"];
    all.extend_from_slice(plugins);
    Tocsin::start(Setup {
        plugins: all,
        default_rules: false,
        rules: rules
            .iter()
            .map(|(file, text)| (file.to_string(), text.clone()))
            .collect(),
        ..Setup::default()
    })
    .await
}

/// Posts one seed event and checks it was accepted.
async fn post(t: &Tocsin, code: &str, severity: &str, service: &str, message: &str) -> Result<()> {
    let (status, body) = t
        .post_events(&event(code, severity, service, message))
        .await?;
    ensure!(status == 202, "POST /v1/events answered {status}: {body}");
    Ok(())
}

/// Waits until `hook` got `n` requests and returns them.
async fn requests(hook: &WebhookReceiver, n: usize) -> Result<Vec<Received>> {
    wait_for(&format!("{n} request(s) at the receiver"), WAIT, || async {
        Ok(hook.received().len() >= n)
    })
    .await?;
    let got = hook.received();
    for r in &got {
        ensure!(
            r.body.is_object(),
            "the body is a JSON object: {r:?} (sent to {})",
            r.uri
        );
        ensure!(
            !r.idempotency_key.is_empty(),
            "the host's delivery id: {r:?}"
        );
    }
    Ok(got)
}

/// `base64(HMAC-SHA256(key, message))`, computed by Python.
fn python_hmac(key: &str, message: &str) -> Result<String> {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import base64, hashlib, hmac, sys; \
             print(base64.b64encode(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), \
             hashlib.sha256).digest()).decode())",
            key,
            message,
        ])
        .output()
        .context("running python3")?;
    ensure!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// The percent-decoded value of query parameter `name` of `uri`.
fn query_param(uri: &str, name: &str) -> Option<String> {
    let (_, query) = uri.split_once('?')?;
    let raw = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = raw.get(i + 1..i + 3);
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[tokio::test]
async fn slack_gets_a_header_a_summary_and_context_blocks() -> Result<()> {
    let hook = WebhookReceiver::start(&[], 200).await?;
    let extra = r##", channel = "#ops", username = "tocsin", icon-emoji = ":rotating_light:""##;
    let channels = [channel("slack", "slack", &hook.url(), extra)];
    let t = engine(&["slack"], &[("slack.toml", rule("SLACK_TEST", &channels))]).await?;
    post(
        &t,
        "SLACK_TEST",
        "critical",
        "device-service",
        "boot timeout <pod-7>",
    )
    .await?;
    let got = requests(&hook, 1).await?;
    let b = &got[0].body;
    assert_eq!(got[0].uri, "/hook");
    assert_eq!(
        b["text"], "🚨 [CRITICAL] SLACK_TEST x1 on device-service",
        "{b}"
    );
    assert_eq!(b["blocks"][0]["type"], "header", "{b}");
    assert_eq!(b["blocks"][0]["text"]["type"], "plain_text");
    assert!(text(&b["blocks"][0]["text"]["text"]).contains("SLACK_TEST x1 on device-service"));
    assert_eq!(b["blocks"][1]["type"], "section");
    assert_eq!(b["blocks"][1]["text"]["type"], "mrkdwn");
    // The summary carries the message, with Slack's control characters escaped.
    assert!(
        text(&b["blocks"][1]["text"]["text"]).contains("boot timeout &lt;pod-7&gt;"),
        "{b}"
    );
    assert_eq!(b["blocks"][2]["type"], "context");
    let context: Vec<&str> = b["blocks"][2]["elements"]
        .as_array()
        .map(|a| a.iter().map(|e| text(&e["text"])).collect())
        .unwrap_or_default();
    assert!(context.contains(&"*Count:* 1"), "{context:?}");
    assert!(
        context.iter().any(|c| c.starts_with("*First seen:* ")),
        "{context:?}"
    );
    assert!(
        context.iter().any(|c| c.starts_with("*Last seen:* ")),
        "{context:?}"
    );
    assert!(text(&b["blocks"][3]["text"]["text"]).starts_with("*Samples*\n```"));
    assert_eq!(b["channel"], "#ops");
    assert_eq!(b["username"], "tocsin");
    assert_eq!(b["icon_emoji"], ":rotating_light:");
    Ok(())
}

#[tokio::test]
async fn dingtalk_markdown_is_signed_in_the_query() -> Result<()> {
    let hook = WebhookReceiver::start(&[], 200).await?;
    let url = format!("{}?access_token=tok123", hook.url());
    let extra = r#", secret = "SECtest-secret", at-mobiles = ["13800000000"]"#;
    let channels = [channel("dingtalk", "dingtalk", &url, extra)];
    let t = engine(
        &["dingtalk"],
        &[("dingtalk.toml", rule("DINGTALK_TEST", &channels))],
    )
    .await?;
    let before = now_ms();
    post(&t, "DINGTALK_TEST", "high", "billing", "card declined").await?;
    let got = requests(&hook, 1).await?;
    let (r, b) = (&got[0], &got[0].body);

    assert_eq!(b["msgtype"], "markdown", "{b}");
    assert_eq!(
        b["markdown"]["title"],
        "🔴 [HIGH] DINGTALK_TEST x1 on billing"
    );
    let md = text(&b["markdown"]["text"]);
    assert!(
        md.starts_with("### 🔴 [HIGH] DINGTALK_TEST x1 on billing"),
        "{md}"
    );
    assert!(md.contains("card declined"), "{md}");
    assert!(md.contains("- **Count:** 1"), "{md}");
    assert!(md.ends_with("@13800000000"), "mention in the text: {md}");
    assert_eq!(
        b["at"],
        json!({ "atMobiles": ["13800000000"], "isAtAll": false })
    );

    // access_token kept, timestamp (ms, the alert's last-seen time) and sign added.
    assert_eq!(
        query_param(&r.uri, "access_token").as_deref(),
        Some("tok123")
    );
    let timestamp = query_param(&r.uri, "timestamp").context("timestamp")?;
    let ms: i64 = timestamp.parse().context("timestamp in ms")?;
    assert!(
        (before - 60_000..=now_ms()).contains(&ms),
        "{ms} within DingTalk's hour"
    );
    let sign = query_param(&r.uri, "sign").context("sign")?;
    let expected = python_hmac("SECtest-secret", &format!("{timestamp}\nSECtest-secret"))?;
    assert_eq!(sign, expected, "sign in {}", r.uri);
    Ok(())
}

#[tokio::test]
async fn feishu_card_with_signature_and_rich_text_post() -> Result<()> {
    let card_hook = WebhookReceiver::start(&[], 200).await?;
    let post_hook = WebhookReceiver::start(&[], 200).await?;
    let channels = [
        channel(
            "feishu",
            "card",
            &card_hook.url(),
            r#", secret = "feishu-secret""#,
        ),
        channel("feishu", "post", &post_hook.url(), r#", format = "post""#),
    ];
    let t = engine(
        &["feishu"],
        &[("feishu.toml", rule("FEISHU_TEST", &channels))],
    )
    .await?;
    let before = now_ms();
    post(&t, "FEISHU_TEST", "critical", "gateway", "upstream reset").await?;

    let card = &requests(&card_hook, 1).await?[0].body;
    assert_eq!(card["msg_type"], "interactive", "{card}");
    assert_eq!(card["card"]["header"]["template"], "red");
    assert_eq!(
        card["card"]["header"]["title"],
        json!({ "tag": "plain_text", "content": "🚨 [CRITICAL] FEISHU_TEST x1 on gateway" })
    );
    assert_eq!(card["card"]["elements"][0]["tag"], "markdown");
    assert!(text(&card["card"]["elements"][0]["content"]).contains("upstream reset"));
    // Feishu signs in the body: timestamp in seconds as text, and
    // base64(HMAC-SHA256(key = timestamp + "\n" + secret, message = "")).
    let timestamp = text(&card["timestamp"]).to_string();
    let secs: i64 = timestamp.parse().context("timestamp in seconds")?;
    assert!(
        (before / 1000 - 60..=now_ms() / 1000).contains(&secs),
        "{secs}"
    );
    let expected = python_hmac(&format!("{timestamp}\nfeishu-secret"), "")?;
    assert_eq!(card["sign"], expected.as_str());

    let rich = &requests(&post_hook, 1).await?[0].body;
    assert_eq!(rich["msg_type"], "post", "{rich}");
    let zh = &rich["content"]["post"]["zh_cn"];
    assert_eq!(zh["title"], "🚨 [CRITICAL] FEISHU_TEST x1 on gateway");
    let lines: Vec<&str> = zh["content"]
        .as_array()
        .map(|a| a.iter().map(|p| text(&p[0]["text"])).collect())
        .unwrap_or_default();
    assert!(lines.contains(&"Count: 1"), "{lines:?}");
    assert!(lines.contains(&"1. upstream reset"), "{lines:?}");
    assert!(rich.get("sign").is_none(), "no secret, no signature");
    Ok(())
}

#[tokio::test]
async fn wecom_markdown_mentions_members() -> Result<()> {
    let hook = WebhookReceiver::start(&[], 200).await?;
    let url = format!("{}?key=robot-key", hook.url());
    let channels = [channel(
        "wecom",
        "wecom",
        &url,
        r#", mentioned-list = ["zhangsan", "lisi"]"#,
    )];
    let t = engine(&["wecom"], &[("wecom.toml", rule("WECOM_TEST", &channels))]).await?;
    post(&t, "WECOM_TEST", "medium", "orders", "slow query").await?;
    let got = requests(&hook, 1).await?;
    let b = &got[0].body;
    assert_eq!(got[0].uri, "/hook?key=robot-key");
    assert_eq!(b["msgtype"], "markdown", "{b}");
    let content = text(&b["markdown"]["content"]);
    assert!(
        content.starts_with("### 🟠 [MEDIUM] WECOM_TEST x1 on orders"),
        "{content}"
    );
    assert!(content.contains("slow query"), "{content}");
    assert!(content.ends_with("<@zhangsan> <@lisi>"), "{content}");
    Ok(())
}

#[tokio::test]
async fn teams_adaptive_card_and_message_card() -> Result<()> {
    let adaptive_hook = WebhookReceiver::start(&[], 200).await?;
    let legacy_hook = WebhookReceiver::start(&[], 200).await?;
    let channels = [
        channel("teams", "adaptive", &adaptive_hook.url(), ""),
        channel(
            "teams",
            "legacy",
            &legacy_hook.url(),
            r#", format = "message-card""#,
        ),
    ];
    let t = engine(&["teams"], &[("teams.toml", rule("TEAMS_TEST", &channels))]).await?;
    post(&t, "TEAMS_TEST", "critical", "search", "index corrupt").await?;

    let a = &requests(&adaptive_hook, 1).await?[0].body;
    assert_eq!(a["type"], "message", "{a}");
    let attachment = &a["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert!(card["version"].is_string());
    assert_eq!(card["body"][0]["type"], "TextBlock");
    assert_eq!(
        card["body"][0]["text"],
        "🚨 [CRITICAL] TEAMS_TEST x1 on search"
    );
    assert_eq!(card["body"][0]["color"], "Attention");
    assert!(text(&card["body"][1]["text"]).contains("index corrupt"));
    assert_eq!(card["body"][2]["type"], "FactSet");
    assert!(card["body"][2]["facts"]
        .as_array()
        .is_some_and(|f| f.contains(&json!({ "title": "Count", "value": "1" }))));

    let m = &requests(&legacy_hook, 1).await?[0].body;
    assert_eq!(m["@type"], "MessageCard", "{m}");
    assert_eq!(m["@context"], "https://schema.org/extensions");
    assert_eq!(m["themeColor"], "D32F2F");
    assert_eq!(m["title"], "🚨 [CRITICAL] TEAMS_TEST x1 on search");
    assert!(m["sections"][0]["facts"]
        .as_array()
        .is_some_and(|f| f.contains(&json!({ "name": "Severity", "value": "critical" }))));
    Ok(())
}

#[tokio::test]
async fn pagerduty_trigger_events_with_a_stable_dedup_key() -> Result<()> {
    let hook = WebhookReceiver::start(&[], 202).await?;
    let channels = [channel(
        "pagerduty",
        "pagerduty",
        &hook.url(),
        &format!(r#", routing-key = "{ROUTING_KEY}""#),
    )];
    let t = engine(
        &["pagerduty"],
        &[("pagerduty.toml", rule("PAGERDUTY_TEST", &channels))],
    )
    .await?;
    // Two alerts of one key (threshold 1), then one of another service.
    post(
        &t,
        "PAGERDUTY_TEST",
        "critical",
        "payments",
        "ledger down 1",
    )
    .await?;
    requests(&hook, 1).await?;
    post(
        &t,
        "PAGERDUTY_TEST",
        "critical",
        "payments",
        "ledger down 2",
    )
    .await?;
    requests(&hook, 2).await?;
    post(&t, "PAGERDUTY_TEST", "low", "reports", "late export").await?;
    let got = requests(&hook, 3).await?;
    let bodies: Vec<&Value> = got.iter().map(|r| &r.body).collect();

    let first = bodies[0];
    assert_eq!(first["routing_key"], ROUTING_KEY, "{first}");
    assert_eq!(first["event_action"], "trigger");
    let p = &first["payload"];
    assert_eq!(p["summary"], "PAGERDUTY_TEST x1 on payments");
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["source"], "payments");
    assert_eq!(p["component"], "payments");
    assert_eq!(p["group"], "pagerduty");
    assert_eq!(p["class"], "PAGERDUTY_TEST");
    assert!(
        text(&p["timestamp"]).ends_with('Z') && text(&p["timestamp"]).contains('T'),
        "RFC 3339: {p}"
    );
    assert_eq!(p["custom_details"]["count"], 1);
    assert_eq!(p["custom_details"]["samples"], json!(["ledger down 1"]));
    assert_eq!(p["custom_details"]["labels"]["service"], "payments");

    // Same rule and key: same dedup key, so PagerDuty groups them.
    let dedup = text(&first["dedup_key"]);
    assert!(
        dedup.contains("pagerduty") && dedup.contains("PAGERDUTY_TEST"),
        "{dedup}"
    );
    assert_eq!(bodies[1]["dedup_key"], dedup);
    assert_eq!(
        bodies[1]["payload"]["custom_details"]["samples"],
        json!(["ledger down 2"])
    );
    // Another key, another incident; low maps to info.
    assert_ne!(bodies[2]["dedup_key"], dedup);
    assert_eq!(bodies[2]["payload"]["severity"], "info");
    Ok(())
}

#[tokio::test]
async fn bad_configs_are_refused_naming_the_key() -> Result<()> {
    let url = "http://127.0.0.1:9/hook";
    let no_key = format!(
        r#"
[match]
codes = ["X"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
[[channels]]
plugin = "pagerduty"
config = {{ url = "{url}" }}
grants = {{ http = ["127.0.0.1"] }}
"#
    );
    let bad_format = rule(
        "Y",
        &[channel("teams", "teams", url, r#", format = "card""#)],
    );
    let t = engine(
        &["pagerduty", "teams"],
        &[("pd-bad.toml", no_key), ("teams-bad.toml", bad_format)],
    )
    .await?;
    for (rule, expect) in [
        ("pd-bad", r#"pagerduty: "routing-key": required"#),
        ("teams-bad", r#"teams: "format": unknown format "card""#),
    ] {
        wait_for(&format!("{rule} refused with {expect:?}"), WAIT, || async {
            let s = t.rule_status(rule).await?;
            Ok(s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(expect) && e.contains(&format!("{rule}.toml"))))
        })
        .await?;
        let s = t.rule_status(rule).await?;
        assert_eq!(s["active"], false, "{s}");
    }
    Ok(())
}
