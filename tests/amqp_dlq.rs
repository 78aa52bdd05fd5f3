//! The RabbitMQ dead letters against the real broker: `tocsin dlq` lists a
//! malformed message and a plugin failure with their reason; once the
//! rule is fixed, a replay by hand and the recovery loop count them
//! exactly once, the replay reaching only the rule that failed; and a
//! SIGKILL in the middle of the loop's replay of 1,000 letters loses and
//! doubles none.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tocsin_tests::rabbit::Rabbit;
use tocsin_tests::{wait_for, wait_progressing, Progress, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(60);

/// The rule before the fix: its plugin panics on every event.
const BROKEN: &str = r#"
[match]
codes = ["PANIC_TEST"]
[aggregate]
plugin = "panic"
[[channels]]
plugin = "log"
"#;

/// The same rule fixed: counts `threshold` events per service.
fn fixed(threshold: u32) -> String {
    format!(
        r#"
[match]
codes = ["PANIC_TEST"]
[aggregate]
plugin = "threshold"
config = {{ threshold = {threshold}, window = "1h", samples = 1 }}
[[channels]]
plugin = "log"
"#
    )
}

/// Another rule taking the same events, which counts them the first time.
const BYSTANDER: &str = r#"
[match]
codes = ["PANIC_TEST"]
[aggregate]
plugin = "threshold"
config = { threshold = 1, window = "1h", samples = 1 }
[[channels]]
plugin = "log"
"#;

async fn engine(rabbit: &Rabbit, env: &[(&str, &str)]) -> anyhow::Result<Tocsin> {
    let mut all = rabbit.env();
    all.push(("TOCSIN_ENGINE_WORKERS".into(), "2".into()));
    all.push(("TOCSIN_AMQP_MAX_RETRIES".into(), "0".into()));
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "log", "panic"],
        default_rules: false,
        rules: vec![
            ("panics.toml".into(), BROKEN.into()),
            ("bystander.toml".into(), BYSTANDER.into()),
        ],
        env: all,
        ..Setup::default()
    })
    .await?;
    consuming(&t).await?;
    Ok(t)
}

async fn consuming(t: &Tocsin) -> anyhow::Result<()> {
    wait_for("tocsin consuming from RabbitMQ (/readyz)", WAIT, || async {
        Ok(t.http.get(t.url("/readyz")).send().await?.status() == 200)
    })
    .await
}

fn panic_event(i: usize, services: usize) -> Value {
    json!({
        "errorCode": "PANIC_TEST", "severity": "high", "serviceName": format!("svc-{}", i % services),
        "message": format!("panic {i}"), "timestamp": "2026-12-07T00:00:00Z", "eventId": format!("evt-{i}"),
    })
}

async fn notifications(t: &Tocsin, rule: &str) -> anyhow::Result<Vec<Value>> {
    Ok(
        t.get_json(&format!("/v1/notifications?rule={rule}&limit=100000"))
            .await?["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

/// Runs `tocsin dlq <args>` against `t`; its stdout.
fn dlq(t: &Tocsin, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(tocsin_tests::binary()?)
        .arg("dlq")
        .args(args)
        .args(["--url", &t.base])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "tocsin dlq {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

async fn fix(t: &Tocsin, threshold: u32) -> anyhow::Result<()> {
    t.write_rule("panics.toml", &fixed(threshold))?;
    wait_for("the fixed rule loaded", WAIT, || async {
        Ok(t.rule_status("panics").await?["aggregate"] == "threshold")
    })
    .await
}

#[tokio::test]
async fn dead_letters_are_listed_and_a_replay_by_hand_counts_them_once() -> anyhow::Result<()> {
    let rabbit = Rabbit::new("dlq").await?;
    // Marks forgotten after 1 s: only the replay's rule filter keeps the
    // bystander from counting the replayed events again.
    let t = engine(
        &rabbit,
        &[
            ("TOCSIN_AMQP_RECOVERY", "false"),
            ("TOCSIN_ENGINE_DEDUP_TTL_SECS", "1"),
        ],
    )
    .await?;
    rabbit.publish("system.error.device", b"{oops").await?;
    for i in 0..2 {
        rabbit.publish_event(&panic_event(i, 2)).await?;
    }
    let dead_queue = format!("{}.dead", rabbit.queue);
    wait_for("three dead letters", WAIT, || async {
        Ok(rabbit.ready(&dead_queue).await? == 3)
    })
    .await?;
    wait_for("the bystander counted both events", WAIT, || async {
        Ok(notifications(&t, "bystander").await?.len() == 2)
    })
    .await?;

    let listed: Value = serde_json::from_str(&dlq(&t, &["list", "--amqp", "--json"])?)?;
    let letters = listed["amqp"]["letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed["amqp"]["total"], 3, "{listed}");
    let mut by_reason = BTreeMap::<String, Vec<Value>>::new();
    for l in &letters {
        let reason = l["reason"].as_str().unwrap_or("").to_string();
        by_reason.entry(reason).or_default().push(l.clone());
    }
    let malformed = &by_reason["malformed"];
    assert_eq!(malformed.len(), 1, "{letters:?}");
    assert!(malformed[0]["error"]
        .as_str()
        .unwrap_or("")
        .contains("not valid JSON"));
    assert_eq!(malformed[0]["preview"], "{oops");
    let failed = &by_reason["processing-failed"];
    assert_eq!(failed.len(), 2, "{letters:?}");
    for l in failed {
        assert_eq!(l["rules"], json!(["panics"]), "{l}");
        assert_eq!(l["routingKey"], "system.error.device");
        assert_eq!(l["replays"], 0);
        assert!(l["error"].as_str().unwrap_or("").contains("trapped"), "{l}");
        assert!(l["ageMs"].as_u64().is_some(), "{l}");
    }
    // Listing took nothing away.
    assert_eq!(rabbit.ready(&dead_queue).await?, 3);
    let table = dlq(&t, &["list"])?;
    assert!(
        table.contains("3 dead letter(s)") && table.contains("processing-failed"),
        "{table}"
    );

    fix(&t, 1).await?;
    // The bystander's marks are gone by now.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = dlq(&t, &["replay", "--amqp", "--reason", "processing-failed"])?;
    assert!(out.contains("replayed 2 dead letters"), "{out}");
    wait_for("the fixed rule counted both", WAIT, || async {
        Ok(notifications(&t, "panics").await?.len() == 2)
    })
    .await?;
    // Every letter now: only the malformed one is left, and it comes back.
    let out = dlq(&t, &["replay", "--amqp", "--all"])?;
    assert!(out.contains("replayed 1 dead letter"), "{out}");
    wait_for(
        "the malformed letter back in the dead letters",
        WAIT,
        || async {
            Ok(
                t.metric("tocsin_events_rejected_total", &[("source", "amqp")])
                    .await?
                    == 2.0
                    && rabbit.ready(&dead_queue).await? == 1,
            )
        },
    )
    .await?;
    let again: Value = serde_json::from_str(&dlq(&t, &["list", "--amqp", "--json"])?)?;
    let left = &again["amqp"]["letters"][0];
    assert_eq!(left["reason"], "malformed");
    assert_eq!(left["replays"], 1, "marked with its replay: {left}");
    assert_eq!(
        left["id"], malformed[0]["id"],
        "the same letter, the same id"
    );

    let panics = notifications(&t, "panics").await?;
    assert_eq!(panics.len(), 2, "each replayed event counted once");
    assert_eq!(
        notifications(&t, "bystander").await?.len(),
        2,
        "the rule that counted them first did not see the replay"
    );
    assert_eq!(
        t.metric("tocsin_amqp_dead_replayed_total", &[("by", "hand")])
            .await?,
        3.0
    );
    let refused = t
        .http
        .post(t.url("/v1/amqp/dead/replay"))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(refused.status(), 400, "a replay must say which letters");
    rabbit.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn the_recovery_loop_replays_once_fixed_and_a_sigkill_mid_replay_loses_and_doubles_none(
) -> anyhow::Result<()> {
    const N: usize = 1000;
    const SERVICES: usize = 10;
    let rabbit = Rabbit::new("recover").await?;
    let mut t = engine(
        &rabbit,
        &[
            ("TOCSIN_AMQP_RECOVERY_EVERY_SECS", "1"),
            ("TOCSIN_AMQP_RECOVERY_PER_SEC", "100"),
        ],
    )
    .await?;
    for i in 0..N {
        rabbit.publish_event(&panic_event(i, SERVICES)).await?;
    }
    let dead_queue = format!("{}.dead", rabbit.queue);
    wait_progressing("every event dead-lettered", WAIT, || async {
        let dead = rabbit.ready(&dead_queue).await?;
        Ok(Progress {
            done: dead as usize == N,
            figure: f64::from(dead),
            state: format!("{dead} dead letters"),
        })
    })
    .await?;
    // Still broken: the loop looks and leaves them (the rule failed
    // moments ago, in the version that is still loaded).
    let passes = t.metric("tocsin_amqp_recovery_passes_total", &[]).await?;
    wait_for("two passes of the recovery loop", WAIT, || async {
        Ok(t.metric("tocsin_amqp_recovery_passes_total", &[]).await? >= passes + 2.0)
    })
    .await?;
    assert_eq!(rabbit.ready(&dead_queue).await? as usize, N);

    fix(&t, 10).await?;
    wait_for("the recovery loop under way", WAIT, || async {
        Ok((rabbit.ready(&dead_queue).await? as usize) <= N * 7 / 10)
    })
    .await?;
    t.kill()?;
    let at_kill = rabbit.ready(&dead_queue).await?;
    tocsin_tests::record_figure(&format!(
        "amqp dlq: SIGKILL with {at_kill} of {N} dead letters left to replay"
    ));
    assert!(at_kill > 0, "killed before the replay ended");
    t.spawn().await?;
    consuming(&t).await?;
    wait_progressing("every letter replayed and counted", WAIT, || async {
        let dead = rabbit.ready(&dead_queue).await?;
        let ready = rabbit.ready(&rabbit.queue).await?;
        let alerts = notifications(&t, "panics").await?.len();
        Ok(Progress {
            done: dead == 0 && ready == 0 && alerts >= N / 10,
            figure: alerts as f64 - f64::from(dead) - f64::from(ready),
            state: format!("{dead} dead, {ready} ready, {alerts} alerts"),
        })
    })
    .await?;
    let n = notifications(&t, "panics").await?;
    assert_eq!(
        n.len(),
        N / 10,
        "threshold 10 over {N} events, across the kill"
    );
    assert!(n.iter().all(|x| x["count"] == 10), "every alert counts 10");
    let mut per_service = BTreeMap::<String, usize>::new();
    for x in &n {
        *per_service
            .entry(x["key"].as_str().unwrap_or("").into())
            .or_default() += 1;
    }
    assert_eq!(per_service.len(), SERVICES, "{per_service:?}");
    assert!(
        per_service.values().all(|&c| c == N / SERVICES / 10),
        "{per_service:?}"
    );
    assert_eq!(
        notifications(&t, "bystander").await?.len(),
        N,
        "the bystander counted each event once, before the replay"
    );
    rabbit.cleanup().await;
    Ok(())
}
