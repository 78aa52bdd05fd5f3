//! The plugin author's path, as a new user walks it: `tocsin plugin new`
//! writes a project outside the repository, `tocsin plugin build` builds
//! it, `tocsin plugin test` shows what it does on the sample events, and
//! the `.wasm` with its sample rule, dropped into a running engine's
//! folders, turns posted events into notifications on `/v1/ws`. Also
//! `tocsin plugin check`'s verdicts on files the engine refuses or stubs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tocsin_tests::{binary, plugin_file, root, wait_for, Setup, TempDir, Tocsin};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `tocsin ARGS` in `dir`; (exit code, stdout, stderr).
fn tocsin(dir: &Path, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(binary()?)
        .args(args)
        .current_dir(dir)
        // Built projects share one cached target folder across runs, and
        // compiled components the engines' cache.
        .env("CARGO_TARGET_DIR", root().join("target").join("plugin-kit"))
        .env(
            "TOCSIN_ENGINE_CACHE",
            root().join("target").join("test-plugin-cache"),
        )
        .output()
        .with_context(|| format!("running tocsin {args:?}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `plugin new` then `plugin build` a Rust project of `world`; its folder.
fn new_and_build(tmp: &Path, name: &str, world: &str) -> Result<PathBuf> {
    let (code, out, err) = tocsin(tmp, &["plugin", "new", name, "--world", world])?;
    ensure!(code == 0, "plugin new: {out}{err}");
    let dir = tmp.join(name);
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "events.jsonl",
        "README.md",
        "vendor/sdk/wit/worlds.wit",
    ] {
        ensure!(
            dir.join(file).is_file(),
            "plugin new wrote no {file}: {out}"
        );
    }
    ensure!(dir.join(format!("{name}.toml")).is_file(), "no sample rule");
    let (code, out, err) = tocsin(&dir, &["plugin", "build"])?;
    ensure!(code == 0, "plugin build: {out}{err}");
    ensure!(
        out.contains("running: cargo build --release --target wasm32-wasip2"),
        "{out}"
    );
    ensure!(
        dir.join(format!("{name}.wasm")).is_file(),
        "no {name}.wasm: {out}"
    );
    Ok(dir)
}

/// `plugin test` on the project's sample events (with the binding's
/// configuration `config`); its JSON report.
fn plugin_test(dir: &Path, name: &str, config: &str) -> Result<Value> {
    let wasm = format!("{name}.wasm");
    let args = [
        "plugin",
        "test",
        &wasm,
        "--events",
        "events.jsonl",
        "--config",
        config,
    ];
    let (code, out, err) = tocsin(dir, &args)?;
    ensure!(code == 0, "plugin test: {out}{err}");
    serde_json::from_str(&out).with_context(|| format!("plugin test printed no JSON: {out}"))
}

/// Copies the project's plugin and rule into `t`'s folders; waits until the
/// rule serves.
async fn install(t: &Tocsin, dir: &Path, name: &str) -> Result<()> {
    let wasm = dir.join(format!("{name}.wasm"));
    let tmp = t.plugins_dir.join(format!(".{name}.tmp"));
    std::fs::copy(&wasm, &tmp)?;
    std::fs::rename(&tmp, t.plugins_dir.join(format!("{name}.wasm")))?;
    let rule = std::fs::read_to_string(dir.join(format!("{name}.toml")))?;
    t.write_rule(&format!("{name}.toml"), &rule)?;
    wait_for(&format!("rule {name} to serve"), WAIT, || async {
        let r = t.rule_status(name).await.unwrap_or_default();
        Ok(r["active"] == true && r["last_error"].is_null())
    })
    .await
}

#[tokio::test]
async fn a_new_rust_aggregator_and_channel_reach_a_running_engine() -> Result<()> {
    let tmp = TempDir::new("plugin-kit")?;
    let agg = new_and_build(tmp.path(), "kit-agg", "aggregator")?;
    // Its unit tests run natively against the SDK's fakes of the host.
    let out = Command::new("cargo")
        .args(["test", "--quiet"])
        .current_dir(&agg)
        .env("CARGO_TARGET_DIR", root().join("target").join("plugin-kit"))
        .output()
        .context("running cargo test in the new project")?;
    let printed = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && printed.contains("2 passed"),
        "cargo test in the new project (its two tests): {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = plugin_test(&agg, "kit-agg", "{}")?;
    let alerts = report["alerts"].as_array().cloned().unwrap_or_default();
    ensure!(
        alerts.len() == 1,
        "three DEVICE_START_FAILED of four events: {report}"
    );
    ensure!(
        alerts[0]["key"] == "DEVICE_START_FAILED|device-service",
        "{report}"
    );
    ensure!(
        alerts[0]["count"] == 3 && alerts[0]["rule"] == "test",
        "{report}"
    );
    let logged = report["logs"].to_string();
    ensure!(
        logged.contains("reached 3"),
        "the plugin's log line: {report}"
    );

    let chan = new_and_build(tmp.path(), "kit-chan", "channel")?;
    let report = plugin_test(&chan, "kit-chan", r#"{"prefix": "[kit-chan]"}"#)?;
    let deliveries = report["deliveries"].as_array().cloned().unwrap_or_default();
    ensure!(
        deliveries.len() == 2,
        "one frame per error code and service: {report}"
    );
    ensure!(deliveries[0]["kind"] == "websocket", "{report}");
    ensure!(
        deliveries[0]["body"]
            .as_str()
            .unwrap_or("")
            .contains("[kit-chan] DEVICE_START_FAILED"),
        "{report}"
    );

    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        ..Setup::default()
    })
    .await?;
    install(&t, &agg, "kit-agg").await?;
    install(&t, &chan, "kit-chan").await?;
    let mut by_agg = t.ws("?rule=kit-agg").await?;
    let mut by_chan = t.ws("?rule=kit-chan").await?;
    t.send("DEVICE_START_FAILED", "device-service", 3, "from the test")
        .await?;
    let n = by_agg.next(WAIT).await?;
    ensure!(
        n["count"] == 3 && n["key"] == "DEVICE_START_FAILED|device-service",
        "{n}"
    );
    let frame = by_chan.next(WAIT).await?;
    let title = frame["title"].as_str().unwrap_or("");
    ensure!(
        title.starts_with("[kit-chan] DEVICE_START_FAILED"),
        "the channel's own frame: {frame}"
    );
    Ok(())
}

#[tokio::test]
async fn plugin_check_names_what_is_wrong() -> Result<()> {
    let tmp = TempDir::new("plugin-check")?;
    let dir = tmp.path();
    // A core module: the most common first mistake (wrong target).
    std::fs::write(dir.join("core.wasm"), b"\0asm\x01\0\0\0")?;
    let (code, _, err) = tocsin(dir, &["plugin", "check", "core.wasm"])?;
    ensure!(code == 1, "a core module is refused: {err}");
    ensure!(
        err.contains("this is a core module; build for `wasm32-wasip2`"),
        "{err}"
    );

    // A component of another world than the one asked for.
    let threshold = plugin_file("threshold")?;
    let path = threshold.to_string_lossy().into_owned();
    let (code, out, err) = tocsin(dir, &["plugin", "check", &path, "--world", "channel"])?;
    ensure!(code == 1, "{out}{err}");
    ensure!(
        err.contains("is an aggregator plugin (it exports `aggregate`), but a channel plugin is needed here (exporting `deliver`)"),
        "{err}"
    );
    let (code, out, err) = tocsin(dir, &["plugin", "check", &path])?;
    ensure!(
        code == 0 && out.contains("an aggregator component"),
        "{out}{err}"
    );

    // A component that imports sockets: loads, and check says the import
    // is stubbed and why.
    let sockets = plugin_file("sockets")?;
    let path = sockets.to_string_lossy().into_owned();
    let (code, out, err) = tocsin(dir, &["plugin", "check", &path])?;
    ensure!(
        code == 0,
        "a stubbed import does not refuse the plugin: {out}{err}"
    );
    ensure!(
        out.contains("note     imports wasi:sockets/") && out.contains("plugins get no sockets"),
        "{out}"
    );
    // And at run time the attempt fails that call only, with a reason.
    let events = dir.join("connect.jsonl");
    std::fs::write(
        &events,
        r#"{"errorCode": "X", "severity": "low", "message": "connect now", "serviceName": "s"}"#,
    )?;
    let ev = events.to_string_lossy().into_owned();
    let (code, out, err) = tocsin(dir, &["plugin", "test", &path, "--events", &ev])?;
    ensure!(code == 1, "the connect attempt fails the call: {out}{err}");
    let report: Value = serde_json::from_str(&out)?;
    ensure!(report["error"]["call"] == "aggregate", "{report}");
    Ok(())
}

/// Builds a component with `tool ARGS` (a language toolchain's default
/// options), then checks that `plugin test` shows its alert for the sample
/// events and that a running engine serves it: three posted events give
/// one notification on `/v1/ws`.
async fn foreign_aggregator_runs(name: &str, tool: PathBuf, args: &[&str]) -> Result<()> {
    let tmp = TempDir::new(name)?;
    let dir = tmp.path();
    ensure!(
        tool.is_file(),
        "{} not found: run the tests with `cargo xtask test` (it installs the toolchains)",
        tool.display()
    );
    let wasm = dir.join(format!("{name}.wasm"));
    let out = Command::new(&tool)
        .args(args)
        .arg("-o")
        .arg(&wasm)
        .current_dir(root().join("tests/plugins"))
        .output()?;
    ensure!(
        out.status.success() && wasm.is_file(),
        "{}: {}{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = root().join("host/templates/events.jsonl");
    let ev = events.to_string_lossy().into_owned();
    let file = format!("{name}.wasm");
    let (code, out, err) = tocsin(dir, &["plugin", "test", &file, "--events", &ev])?;
    ensure!(code == 0, "plugin test: {out}{err}");
    let report: Value = serde_json::from_str(&out)?;
    ensure!(
        report["alerts"][0]["key"] == "DEVICE_START_FAILED|device-service",
        "{report}"
    );
    ensure!(
        report["alerts"].as_array().map(Vec::len) == Some(1),
        "{report}"
    );

    let t = Tocsin::start(Setup {
        plugins: vec!["websocket"],
        default_rules: false,
        ..Setup::default()
    })
    .await?;
    let tmp_file = t.plugins_dir.join(format!(".{name}.tmp"));
    std::fs::copy(&wasm, &tmp_file)?;
    std::fs::rename(&tmp_file, t.plugins_dir.join(&file))?;
    let rule = format!(
        "[match]\ncodes = [\"DEVICE_START_FAILED\"]\n\n[aggregate]\nplugin = \"{name}\"\n\
         config = {{ threshold = 3 }}\n\n[[channels]]\nplugin = \"websocket\"\ngrants = {{ websocket = true }}\n"
    );
    t.write_rule(&format!("{name}.toml"), &rule)?;
    // Compiling a 12-18 MB component takes a while on a busy machine
    // (once: the artifact is cached by content hash).
    wait_for(
        &format!("the {name} rule to serve"),
        Duration::from_secs(300),
        || async {
            let r = t.rule_status(name).await.unwrap_or_default();
            Ok(r["active"] == true && r["last_error"].is_null())
        },
    )
    .await?;
    let mut ws = t.ws(&format!("?rule={name}")).await?;
    t.send(
        "DEVICE_START_FAILED",
        "device-service",
        3,
        "from a foreign plugin",
    )
    .await?;
    let n = ws.next(WAIT).await?;
    ensure!(
        n["count"] == 3 && n["key"] == "DEVICE_START_FAILED|device-service",
        "{n}"
    );
    Ok(())
}

#[tokio::test]
async fn a_python_plugin_built_with_default_options_runs_in_the_engine() -> Result<()> {
    let wit = root().join("wit").to_string_lossy().into_owned();
    let args = [
        "-d",
        &wit,
        "-w",
        "aggregator",
        "componentize",
        "app",
        "-p",
        "python",
    ];
    foreign_aggregator_runs(
        "pyagg",
        root().join("target/pyenv/bin/componentize-py"),
        &args,
    )
    .await
}

#[tokio::test]
async fn a_javascript_plugin_built_with_default_options_runs_in_the_engine() -> Result<()> {
    let wit = root().join("wit").to_string_lossy().into_owned();
    let args = [
        "componentize",
        "js/app.js",
        "--wit",
        &wit,
        "-n",
        "aggregator",
    ];
    foreign_aggregator_runs(
        "jsagg",
        root().join("target/jsenv/node_modules/.bin/jco"),
        &args,
    )
    .await
}
