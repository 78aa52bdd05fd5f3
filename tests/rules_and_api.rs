//! `tocsin check`, the intake API's validation, status and metrics.

use std::process::Command;

use serde_json::json;
use tocsin_tests::{binary, plugin_file, root, Setup, TempDir, Tocsin};

#[test]
fn check_accepts_the_shipped_rules_and_plugins() -> anyhow::Result<()> {
    let data = TempDir::new("check")?;
    let out = Command::new(binary()?)
        .current_dir(root())
        .args(["check", "--data"])
        .arg(data.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("ok    rule").count(), 12, "{stdout}");
    assert!(stdout.contains("all good"));
    Ok(())
}

/// Without `--data`, check must not create `./data` where it is run (nor
/// open the engine's state: an engine may be running): it compiles into
/// the user's cache instead.
#[test]
fn check_without_a_data_directory_writes_nothing_where_it_runs() -> anyhow::Result<()> {
    let dir = TempDir::new("check-cwd")?;
    let (work, cache) = (dir.path().join("work"), dir.path().join("cache"));
    std::fs::create_dir_all(work.join("plugins"))?;
    std::fs::create_dir_all(work.join("rules"))?;
    std::fs::copy(
        plugin_file("threshold")?,
        work.join("plugins/threshold.wasm"),
    )?;
    std::fs::write(
        work.join("rules/one.toml"),
        "[aggregate]\nplugin = \"threshold\"\nconfig = { threshold = 2, window = \"1m\" }\n",
    )?;
    let out = Command::new(binary()?)
        .current_dir(&work)
        .args(["check", "--rules", "rules", "--plugins", "plugins"])
        .env("XDG_CACHE_HOME", &cache)
        .env_remove("TOCSIN_ENGINE_CACHE")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok    rule   one"),
        "check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut left: Vec<String> = std::fs::read_dir(&work)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    left.sort();
    assert_eq!(left, ["plugins", "rules"], "check wrote into its folder");
    let compiled = std::fs::read_dir(cache.join("tocsin/compiled"))?.count();
    assert!(
        compiled > 0,
        "the plugin was compiled into the user's cache"
    );
    Ok(())
}

#[test]
fn the_example_config_is_valid() -> anyhow::Result<()> {
    let data = TempDir::new("check-example")?;
    let out = Command::new(binary()?)
        .current_dir(root())
        .args(["check", "--config", "tocsin.example.toml", "--data"])
        .arg(data.path())
        .output()?;
    assert!(
        out.status.success(),
        "tocsin.example.toml must stay valid:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn check_reports_each_broken_file_precisely() -> anyhow::Result<()> {
    let dir = TempDir::new("check-bad")?;
    let (rules, plugins) = (dir.path().join("rules"), dir.path().join("plugins"));
    std::fs::create_dir_all(&rules)?;
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(plugin_file("threshold")?, plugins.join("threshold.wasm"))?;
    std::fs::write(plugins.join("broken.wasm"), b"not wasm at all")?;
    std::fs::write(
        rules.join("syntax.toml"),
        "[match]\ncodes = [\"A\"\n[aggregate]\nplugin = \"threshold\"\n",
    )?;
    std::fs::write(
        rules.join("unknown-key.toml"),
        "[aggregate]\nplugin = \"threshold\"\nthreshhold = 3\n",
    )?;
    std::fs::write(
        rules.join("bad-config.toml"),
        "[aggregate]\nplugin = \"threshold\"\nconfig = { threshold = 3 }\n",
    )?;
    std::fs::write(
        rules.join("missing-plugin.toml"),
        "[aggregate]\nplugin = \"counter\"\n",
    )?;
    std::fs::write(
        rules.join("fine.toml"),
        "[aggregate]\nplugin = \"threshold\"\nconfig = { threshold = 3, window = \"1m\" }\n",
    )?;
    let out = Command::new(binary()?)
        .args(["check", "--rules"])
        .arg(&rules)
        .arg("--plugins")
        .arg(&plugins)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(
        line("broken.wasm").contains("not a WebAssembly component"),
        "{stderr}"
    );
    assert!(line("syntax.toml").contains("line"), "{stderr}");
    assert!(line("unknown-key.toml").contains("threshhold"), "{stderr}");
    assert!(line("bad-config.toml").contains("window"), "{stderr}");
    assert!(
        line("missing-plugin.toml").contains("no plugin `counter`"),
        "{stderr}"
    );
    assert!(!stderr.contains("fine.toml"), "{stderr}");
    assert!(stderr.contains("5 error(s)"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn bad_events_get_per_field_errors_and_nothing_is_accepted() -> anyhow::Result<()> {
    let t = Tocsin::start(Setup::default()).await?;
    let body = json!([
        {"errorCode": "DATABASE_CONNECTION_FAILED", "severity": "critical", "message": "ok", "serviceName": "db"},
        {"errorCode": "X", "severity": "urgent", "message": "m"},
    ]);
    let (status, answer) = t.post_events(&body).await?;
    assert_eq!(status, 400);
    assert_eq!(answer["accepted"], 0);
    let errors = answer["errors"].as_array().cloned().unwrap_or_default();
    let fields: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["item"].as_u64().unwrap_or(99),
                e["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        fields,
        vec![(1, "serviceName"), (1, "severity")],
        "{answer}"
    );

    let (status, _) = t.post_events(&json!("just a string")).await?;
    assert_eq!(status, 400);
    let r = t
        .http
        .post(t.url("/v1/events"))
        .body("{broken")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await?.contains("not valid JSON"));

    // The valid first item of the rejected batch was not processed.
    let (status, answer) = t
        .post_events(
            &json!({"errorCode": "A", "severity": "low", "message": "m", "serviceName": "s"}),
        )
        .await?;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(1)));
    t.wait_processed(1.0).await?;
    assert_eq!(
        t.metric("tocsin_events_received_total", &[("source", "http")])
            .await?,
        1.0
    );
    assert_eq!(
        t.metric("tocsin_events_rejected_total", &[("source", "http")])
            .await?,
        3.0
    );
    assert_eq!(
        t.metric(
            "tocsin_events_matched_total",
            &[("rule", "database-connection-failed")]
        )
        .await?,
        0.0
    );
    Ok(())
}

#[tokio::test]
async fn status_endpoints_describe_what_is_loaded() -> anyhow::Result<()> {
    let t = Tocsin::start(Setup::default()).await?;
    let plugins = t.get_json("/v1/plugins").await?;
    let list = plugins["plugins"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 6);
    let threshold = t.plugin_status("threshold").await?;
    assert_eq!(threshold["world"], "aggregator");
    assert_eq!(threshold["hash"].as_str().map(str::len), Some(64));
    assert!(threshold["loaded_at"].as_i64().is_some());
    assert!(threshold["last_error"].is_null());
    let rule = t.rule_status("database-connection-failed").await?;
    assert_eq!(rule["active"], true);
    assert_eq!(rule["aggregate"], "threshold");
    assert_eq!(rule["channels"], json!(["websocket", "email"]));
    let metrics = t.http.get(t.url("/metrics")).send().await?.text().await?;
    assert!(metrics.contains("tocsin_rules_active 12"), "{metrics}");
    Ok(())
}
