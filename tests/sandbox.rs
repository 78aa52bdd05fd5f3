//! Plugins are untrusted: a plugin that loops forever, one that allocates
//! without bound and one that panics are stopped at their deadline, cap or
//! trap, counted, and never take the host or other rules down.

use std::time::Duration;

use tocsin_tests::{wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(15);

fn rule(code: &str, plugin: &str) -> String {
    format!(
        r#"
[match]
codes = ["{code}"]
[aggregate]
plugin = "{plugin}"
[[channels]]
plugin = "websocket"
grants = {{ websocket = true }}
"#
    )
}

async fn engine() -> anyhow::Result<Tocsin> {
    let setup = Setup {
        plugins: vec!["threshold", "websocket", "spin", "hog", "panic"],
        default_rules: false,
        rules: vec![
            ("spin.toml".into(), rule("SPIN", "spin")),
            ("hog.toml".into(), rule("HOG", "hog")),
            ("panic.toml".into(), rule("PANIC", "panic")),
            (
                "healthy.toml".into(),
                rule("HEALTHY", "threshold").replace(
                    "plugin = \"threshold\"",
                    "plugin = \"threshold\"\nconfig = { threshold = 1, window = \"1h\" }",
                ),
            ),
        ],
        env: vec![
            ("TOCSIN_ENGINE_WORKERS".into(), "2".into()),
            ("TOCSIN_SANDBOX_CALL_TIMEOUT_MS".into(), "300".into()),
            ("TOCSIN_SANDBOX_MEMORY_MB".into(), "32".into()),
        ],
        // One plugin's own cap, below the default: what a Python or JS
        // plugin's larger cap is set with.
        config: "[sandbox.plugins.hog]\nmemory_mb = 24\n".into(),
    };
    Tocsin::start(setup).await
}

#[tokio::test]
async fn runaway_plugins_are_stopped_and_others_keep_serving() -> anyhow::Result<()> {
    let t = engine().await?;
    let mut ws = t.ws("?rule=healthy").await?;

    // Each bad call is stopped; meanwhile the healthy rule serves.
    t.send("SPIN", "s", 1, "spin forever").await?;
    let mut hog = tocsin_tests::event("HOG", "high", "s", "hog memory");
    hog["eventId"] = "hog-1".into();
    let (status, body) = t.post_events(&hog).await?;
    assert_eq!(status, 202, "{body}");
    let mut panic = tocsin_tests::event("PANIC", "high", "s", "panic now");
    panic["eventId"] = "panic-1".into();
    let (status, body) = t.post_events(&panic).await?;
    assert_eq!(status, 202, "{body}");
    t.send("HEALTHY", "s", 1, "still here").await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(n["rule"], "healthy");

    wait_for("spin stopped at its deadline", WAIT, || async {
        Ok(t.plugin_errors("spin", "deadline").await? >= 1.0)
    })
    .await?;
    wait_for("hog stopped at its memory cap", WAIT, || async {
        Ok(t.plugin_errors("hog", "memory").await? >= 1.0)
    })
    .await?;
    // At its own cap (24 MiB), named with the export in one line.
    wait_for("the hog's trace", WAIT, || async {
        let r = t.http.get(t.url("/v1/events/hog-1/trace")).send().await?;
        Ok(r.status() == 200 && r.text().await?.contains("\"failed\""))
    })
    .await?;
    let trace = t.get_json("/v1/events/hog-1/trace").await?.to_string();
    assert!(
        trace.contains("plugin `hog` hit its memory cap in `aggregate`")
            && trace.contains(&format!("cap is {}", 24 << 20)),
        "{trace}"
    );
    wait_for("panic trapped", WAIT, || async {
        Ok(t.plugin_errors("panic", "trap").await? >= 1.0)
    })
    .await?;
    // The panic's own message reaches the host (WASI stderr and the
    // environment a Rust panic reads are linked, not stubbed as traps).
    // The trace is recorded after the batch: wait for it.
    wait_for("the panic's trace", WAIT, || async {
        let r = t.http.get(t.url("/v1/events/panic-1/trace")).send().await?;
        Ok(r.status() == 200 && r.text().await?.contains("\"failed\""))
    })
    .await?;
    let trace = t.get_json("/v1/events/panic-1/trace").await?;
    let failed = trace["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["stage"] == "failed")
        .cloned()
        .unwrap_or_default();
    let detail = failed["detail"].as_str().unwrap_or("");
    assert!(detail.contains("boom: panic now"), "{trace}");
    assert!(!detail.contains("unknown import"), "{trace}");
    assert_eq!(
        t.metric("tocsin_events_failed_total", &[("rule", "spin")])
            .await?,
        1.0
    );

    // The host is alive, and the trapped plugins work again on fresh
    // instances for well-behaved input.
    let mut all = t.ws("").await?;
    for code in ["SPIN", "HOG", "PANIC"] {
        t.send(code, "s", 1, "behave").await?;
        let n = all.next(WAIT).await?;
        assert_eq!(
            n["rule"],
            code.to_ascii_lowercase(),
            "{code} serves again after its trap: {n}"
        );
    }
    let health = t.get_json("/healthz").await?;
    assert_eq!(health["status"], "ok");
    Ok(())
}

/// A plugin whose memory only grows (as ComponentizeJS's does, ~1 KB per
/// event) is retired at three quarters of its cap after a call and
/// replaced by a fresh instance: every event is served, none fails at the
/// cap. `hog` leaks 2 MiB per call under its 24 MiB cap, so without the
/// recycling the twelfth call would trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_plugin_is_renewed_before_its_memory_cap() -> anyhow::Result<()> {
    let t = engine().await?;
    let mut ws = t.ws("?rule=hog").await?;
    for i in 0..30 {
        // One event per call: wait for each notification before the next.
        t.send("HOG", "s", 1, &format!("leak {i}")).await?;
        let n = ws.next(WAIT).await?;
        assert_eq!(n["rule"], "hog", "{n}");
    }
    assert_eq!(t.plugin_errors("hog", "memory").await?, 0.0);
    assert_eq!(t.plugin_errors("hog", "trap").await?, 0.0);
    let recycled = t
        .metric(
            "tocsin_plugin_instances_recycled_total",
            &[("plugin", "hog")],
        )
        .await?;
    assert!(
        recycled >= 2.0,
        "30 leaking calls renewed {recycled} instances"
    );
    Ok(())
}

/// A rule whose plugin fails on an event does not fail the answer: the
/// `202` lists the event under `failed`, the other rules counted it, and
/// a re-send is recognised by them (not counted twice) while the failing
/// rule tries again.
#[tokio::test]
async fn a_failing_rule_is_listed_in_the_answer_and_others_count_once() -> anyhow::Result<()> {
    let healthy = rule("BOTH", "threshold").replace(
        "plugin = \"threshold\"",
        "plugin = \"threshold\"\nconfig = { threshold = 1, window = \"1h\" }",
    );
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket", "panic"],
        default_rules: false,
        rules: vec![
            ("panics.toml".into(), rule("BOTH", "panic")),
            ("healthy.toml".into(), healthy),
        ],
        ..Setup::default()
    })
    .await?;
    let mut ws = t.ws("?rule=healthy").await?;
    let mut ev = tocsin_tests::event("BOTH", "high", "s", "panic first");
    ev["eventId"] = "both-1".into();
    for attempt in 1..=2 {
        let (status, body) = t.post_events(&ev).await?;
        assert_eq!(status, 202, "{body}");
        let failed = &body["failed"];
        assert_eq!(failed[0]["id"], "both-1", "attempt {attempt}: {body}");
        let error = failed[0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("panics") && error.contains("boom"),
            "the error names the rule and the panic: {body}"
        );
        assert_eq!(
            t.metric("tocsin_ingest_rule_failures_total", &[("source", "http")])
                .await?,
            attempt as f64
        );
    }
    let n = ws.next(WAIT).await?;
    assert!(n.to_string().contains("panic first"), "{n}");
    // The re-send was not counted again by the healthy rule: its next
    // notification is the next event's.
    let mut next = tocsin_tests::event("BOTH", "high", "s", "second event");
    next["eventId"] = "both-2".into();
    let (status, body) = t.post_events(&next).await?;
    assert_eq!(status, 202, "{body}");
    assert!(body.get("failed").is_none(), "nothing failed: {body}");
    let n = ws.next(WAIT).await?;
    assert!(
        n.to_string().contains("second event"),
        "the re-sent event was counted twice: {n}"
    );
    Ok(())
}
