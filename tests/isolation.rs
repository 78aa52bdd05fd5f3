//! Isolation (issue 17): a rule whose plugin runs to its CPU deadline is
//! moved to a lane of its own, so its next slow calls hold back no other
//! rule — neither the events of its batch nor, on the embedded store, the
//! batches waiting on the same log cut — and it still counts exactly.
//!
//! The `spin` plugin spins on an event whose message says "spin"; its
//! deadline is raised to 4 s here so that "the healthy rule served while
//! the spin was still running" is a matter of order, not of timing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(30);
const HEALTHY_CHECKS: usize = 10;

async fn engine() -> anyhow::Result<Tocsin> {
    let rule = |code: &str, plugin: &str, config: &str| {
        format!(
            "[match]\ncodes = [\"{code}\"]\n[aggregate]\nplugin = \"{plugin}\"\n{config}\n\
             [[channels]]\nplugin = \"websocket\"\ngrants = {{ websocket = true }}\n"
        )
    };
    Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket", "spin"],
        default_rules: false,
        rules: vec![
            (
                "healthy.toml".into(),
                rule(
                    "HEALTHY",
                    "threshold",
                    "config = { threshold = 1, window = \"1h\" }",
                ),
            ),
            ("spin.toml".into(), rule("SPIN", "spin", "")),
        ],
        env: vec![("TOCSIN_ENGINE_WORKERS".into(), "2".into())],
        config: "[sandbox.plugins.spin]\ncall_timeout_ms = 4000\n".into(),
    })
    .await
}

/// Posts one event with its own id to `/v1/events` at `url`; the answer.
async fn post_to(
    http: &reqwest::Client,
    url: &str,
    code: &str,
    id: &str,
    message: &str,
) -> anyhow::Result<Value> {
    let mut event = tocsin_tests::event(code, "high", "iso", message);
    event["eventId"] = id.into();
    let r = http.post(url).json(&event).send().await?;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status == 202, "{id}: {status} {body}");
    Ok(body)
}

async fn post(t: &Tocsin, code: &str, id: &str, message: &str) -> anyhow::Result<Value> {
    post_to(
        &reqwest::Client::new(),
        &t.url("/v1/events"),
        code,
        id,
        message,
    )
    .await
}

/// Whether the answer says no rule failed an event.
fn none_failed(body: &Value) -> bool {
    body["failed"].as_object().is_none_or(|m| m.is_empty())
}

#[tokio::test]
async fn a_rule_past_its_deadline_runs_isolated_and_holds_no_one_back() -> anyhow::Result<()> {
    let t = engine().await?;
    let mut ws = t.ws("").await?;

    // The first offence: the shared worker runs it, to the deadline.
    let body = post(&t, "SPIN", "spin-1", "spin").await?;
    assert!(
        body.to_string().contains("deadline"),
        "spin-1 failed: {body}"
    );
    let isolated = &t.rule_status("spin").await?["isolated"];
    assert_eq!(isolated["strikes"], 1, "spin is isolated: {isolated}");
    assert!(
        t.rule_status("healthy").await?["isolated"].is_null(),
        "the healthy rule is not"
    );

    // The second one runs in the lane; while it spins, the healthy rule
    // serves event after event, each through to its WebSocket frame
    // (which waits for the state's durability on the embedded store).
    let handed = t.metric("tocsin_isolated_events_total", &[]).await?;
    let answered = Arc::new(AtomicBool::new(false));
    let spinning = {
        let (url, answered) = (t.url("/v1/events"), answered.clone());
        tokio::spawn(async move {
            let r = post_to(&reqwest::Client::new(), &url, "SPIN", "spin-2", "spin").await;
            answered.store(true, Ordering::SeqCst);
            r
        })
    };
    wait_for("spin-2 handed to the isolated lane", WAIT, || async {
        Ok(t.metric("tocsin_isolated_events_total", &[]).await? > handed)
    })
    .await?;
    for i in 0..HEALTHY_CHECKS {
        let body = post(&t, "HEALTHY", &format!("healthy-{i}"), "fine").await?;
        assert!(none_failed(&body), "healthy-{i}: {body}");
        loop {
            let n = ws.next(WAIT).await?;
            if n["rule"] == "healthy" {
                break;
            }
        }
    }
    assert!(
        !answered.load(Ordering::SeqCst),
        "the healthy rule served {HEALTHY_CHECKS} events while the isolated rule spun"
    );
    let body = spinning.await??;
    assert!(
        body.to_string().contains("deadline"),
        "spin-2 failed: {body}"
    );
    let isolated = &t.rule_status("spin").await?["isolated"];
    assert_eq!(isolated["strikes"], 2, "the stay is extended: {isolated}");

    // The isolated rule still counts exactly: each event once, a re-send
    // recognised.
    let before = t.metric("tocsin_alerts_total", &[("rule", "spin")]).await?;
    for round in 0..2 {
        for i in 0..20 {
            let body = post(&t, "SPIN", &format!("ok-{i}"), "fine").await?;
            assert!(none_failed(&body), "round {round}, ok-{i}: {body}");
        }
    }
    let fired = t.metric("tocsin_alerts_total", &[("rule", "spin")]).await? - before;
    assert_eq!(
        fired, 20.0,
        "20 distinct events, each sent twice, fire 20 alerts"
    );
    Ok(())
}
