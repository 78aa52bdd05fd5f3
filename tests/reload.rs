//! Hot reload of rules and plugins: edits take effect without a restart,
//! bad files never replace good ones, and no event is lost or counted twice
//! while files are swapped under load.

use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin_tests::{plugin_file, wait_for, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(10);

/// Appends a custom section: a valid component with different bytes (and
/// so a different content hash) but the same behaviour.
fn variant(bytes: &[u8], tag: u8) -> Vec<u8> {
    let name = b"tocsin-test-variant";
    let payload_len = 1 + name.len() + 1;
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(payload_len as u8); // LEB128, < 128
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(tag);
    out
}

#[tokio::test]
async fn editing_a_rule_takes_effect_within_a_second() -> anyhow::Result<()> {
    let t = Tocsin::start(Setup::default()).await?;
    let mut ws = t.ws("?rule=device-start-failed").await?;
    let before = t.rule_status("device-start-failed").await?["hash"].clone();
    let text = std::fs::read_to_string(t.rules_dir.join("device-start-failed.toml"))?;
    let edited = text.replace("threshold = 3,", "threshold = 2,");
    assert_ne!(text, edited, "the default rule has `threshold = 3,`");

    let written = Instant::now();
    std::fs::write(t.rules_dir.join("device-start-failed.toml"), &edited)?; // in place, like an editor
    wait_for(
        "the edited rule to be active",
        Duration::from_secs(1),
        || async {
            let s = t.rule_status("device-start-failed").await?;
            Ok(s["hash"] != before && s["active"] == true && s["last_error"].is_null())
        },
    )
    .await?;
    let took = written.elapsed();

    t.send("DEVICE_START_FAILED", "svc", 2, "after edit")
        .await?;
    let n = ws.next(WAIT).await?;
    assert_eq!(
        n["count"], 2,
        "new threshold in force ({took:?} after the write)"
    );
    Ok(())
}

#[tokio::test]
async fn a_broken_rule_keeps_the_previous_version_serving() -> anyhow::Result<()> {
    let t = Tocsin::start(Setup::default()).await?;
    let mut ws = t.ws("?rule=device-start-failed").await?;
    let file = "device-start-failed.toml";
    let good = std::fs::read_to_string(t.rules_dir.join(file))?;

    for (broken, expect) in [
        (good.replace("[aggregate]", "[aggregate"), "line"),
        (
            good.replace("plugin = \"threshold\"", "plugin = \"nope\""),
            "no plugin `nope`",
        ),
        (
            good.replace("plugin = \"threshold\"", "plugin = \"websocket\""),
            "is a channel plugin",
        ),
        (
            good.replace("window = \"15m\"", "window = \"15x\""),
            "invalid duration",
        ),
        (
            good.replace("threshold = 3,", "threshold = 0,"),
            "must be at least 1",
        ),
    ] {
        t.write_rule(file, &broken)?;
        wait_for(
            &format!("the error mentioning {expect:?}"),
            WAIT,
            || async {
                let s = t.rule_status("device-start-failed").await?;
                Ok(s["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(expect) && e.contains(file)))
            },
        )
        .await?;
        let s = t.rule_status("device-start-failed").await?;
        assert_eq!(s["active"], true, "old version still serving: {s}");
    }
    // Still the old threshold of 3.
    t.send("DEVICE_START_FAILED", "svc", 3, "x").await?;
    assert_eq!(ws.next(WAIT).await?["count"], 3);
    let failures = t
        .metric(
            "tocsin_reloads_total",
            &[("kind", "rule"), ("result", "error")],
        )
        .await?;
    assert!(failures >= 5.0, "reload failures counted: {failures}");

    // Fixing the file recovers.
    t.write_rule(file, &good.replace("threshold = 3,", "threshold = 4,"))?;
    wait_for("the fixed rule", WAIT, || async {
        Ok(t.rule_status("device-start-failed").await?["last_error"].is_null())
    })
    .await?;
    t.send("DEVICE_START_FAILED", "svc", 4, "y").await?;
    assert_eq!(ws.next(WAIT).await?["count"], 4);

    // Deleting the file unloads the rule.
    std::fs::remove_file(t.rules_dir.join(file))?;
    wait_for("the rule to be unloaded", WAIT, || async {
        let v = t.get_json("/v1/rules").await?;
        Ok(!v["rules"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["name"] == "device-start-failed")))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_corrupt_plugin_copy_keeps_the_previous_version() -> anyhow::Result<()> {
    let t = Tocsin::start(Setup::default()).await?;
    let mut ws = t.ws("?rule=database-connection-failed").await?;
    let target = t.plugins_dir.join("threshold.wasm");
    let good = std::fs::read(&target)?;
    let good_hash = t.plugin_status("threshold").await?["hash"].clone();

    // `cp` of garbage over the plugin, in place.
    std::fs::write(&target, b"this is not a component")?;
    wait_for("/v1/plugins to show the error", WAIT, || async {
        let s = t.plugin_status("threshold").await?;
        Ok(s["last_error"].as_str().is_some_and(|e| {
            e.contains("threshold.wasm") && e.contains("not a WebAssembly component")
        }))
    })
    .await?;
    let s = t.plugin_status("threshold").await?;
    assert_eq!(s["hash"], good_hash, "previous version still loaded: {s}");
    t.send("DATABASE_CONNECTION_FAILED", "db", 1, "still served")
        .await?;
    assert_eq!(ws.next(WAIT).await?["rule"], "database-connection-failed");

    // A truncated (half-written) component is refused the same way.
    std::fs::write(&target, &good[..good.len() / 2])?;
    wait_for("the truncated file to be refused", WAIT, || async {
        let s = t.plugin_status("threshold").await?;
        Ok(s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("does not compile")))
    })
    .await?;

    // Restoring the file recovers (same bytes as the serving version).
    std::fs::write(&target, &good)?;
    wait_for("the error to clear", WAIT, || async {
        Ok(t.plugin_status("threshold").await?["last_error"].is_null())
    })
    .await?;
    let failures = t
        .metric(
            "tocsin_reloads_total",
            &[("kind", "plugin"), ("result", "error")],
        )
        .await?;
    assert!(failures >= 2.0, "both bad copies counted: {failures}");
    Ok(())
}

#[tokio::test]
async fn a_slow_copy_loads_once_complete() -> anyhow::Result<()> {
    let t = Tocsin::start(Setup::default()).await?;
    let target = t.plugins_dir.join("threshold.wasm");
    let new = variant(&std::fs::read(plugin_file("threshold")?)?, 1);
    // Write the new version in chunks with pauses longer than the debounce.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&target)?;
        for chunk in new.chunks(new.len() / 4 + 1) {
            f.write_all(chunk)?;
            f.flush()?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let want = blake3::hash(&new).to_hex().to_string();
    wait_for("the completed copy to load", WAIT, || async {
        let s = t.plugin_status("threshold").await?;
        Ok(s["hash"] == want && s["last_error"].is_null())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn no_event_is_lost_or_doubled_while_swapping_under_load() -> anyhow::Result<()> {
    const SWAPS: usize = 20;
    let rule = |comment: &str| {
        format!(
            r#"# {comment}
[match]
codes = ["SWAP_TEST"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h", samples = 0 }}
[[channels]]
plugin = "log"
"#
        )
    };
    let setup = Setup {
        rules: vec![("swap.toml".into(), rule("v0"))],
        env: vec![("TOCSIN_ENGINE_WORKERS".into(), "2".into())],
        ..Setup::default()
    };
    let t = Tocsin::start(setup).await?;
    let plugin = std::fs::read(plugin_file("threshold")?)?;
    let versions = [variant(&plugin, 1), variant(&plugin, 2)];

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let http = t.http.clone();
        let url = t.url("/v1/events");
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<Value> = (0..20)
                    .map(|i| {
                        tocsin_tests::event(
                            "SWAP_TEST",
                            "high",
                            &format!("s{}", (sent + i) % 7),
                            "x",
                        )
                    })
                    .collect();
                let r = http.post(&url).json(&batch).send().await?;
                anyhow::ensure!(r.status() == 202, "POST answered {}", r.status());
                sent += batch.len();
            }
            anyhow::Ok(sent)
        })
    };
    // Swap the plugin and the rule SWAPS times, each time waiting until the
    // new generation serves, while the sender keeps posting.
    let mut generation = t.get_json("/healthz").await?["generation"]
        .as_u64()
        .unwrap_or(0);
    let first = generation;
    for swap in 1..=SWAPS {
        let wasm = &versions[swap % 2];
        let tmp = t.plugins_dir.join(".threshold.tmp");
        std::fs::write(&tmp, wasm)?;
        std::fs::rename(&tmp, t.plugins_dir.join("threshold.wasm"))?;
        t.write_rule("swap.toml", &rule(&format!("v{swap}")))?;
        let before = generation;
        wait_for("the swap to be published", WAIT, || async {
            Ok(t.get_json("/healthz").await?["generation"]
                .as_u64()
                .unwrap_or(0)
                > before)
        })
        .await?;
        generation = t.get_json("/healthz").await?["generation"]
            .as_u64()
            .unwrap_or(0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.await??;
    let n = sent as f64;
    assert!(sent >= 1000, "enough load during the swaps: {sent}");
    // Default rules see none of these events; only `swap` matches them.
    t.wait_processed(n).await?;
    let alerts = t.metric("tocsin_alerts_total", &[("rule", "swap")]).await?;
    let failed = t.metric("tocsin_events_failed_total", &[]).await?;
    let matched = t
        .metric("tocsin_events_matched_total", &[("rule", "swap")])
        .await?;
    assert!(
        generation >= first + SWAPS as u64,
        "every swap published a generation"
    );
    assert_eq!(failed, 0.0);
    assert_eq!(matched, n, "every event matched once");
    assert_eq!(
        alerts, n,
        "threshold 1: one alert per event, none lost, none doubled ({SWAPS} swaps, {sent} events)"
    );
    Ok(())
}
