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
use tocsin_tests::{binary, plugin_file, record_figure, root, wait_for, Setup, TempDir, Tocsin};

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
        // componentize-py and jco, installed by the first build and kept.
        .env(
            "TOCSIN_TOOLCHAINS",
            root().join("target").join("plugin-toolchains"),
        )
        .output()
        .with_context(|| format!("running tocsin {args:?}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `plugin new` then `plugin build` a project of `world` in `lang`; its
/// folder. Records how long the build took.
fn new_and_build(tmp: &Path, name: &str, world: &str, lang: &str) -> Result<PathBuf> {
    let (code, out, err) = tocsin(
        tmp,
        &["plugin", "new", name, "--world", world, "--lang", lang],
    )?;
    ensure!(code == 0, "plugin new: {out}{err}");
    let dir = tmp.join(name);
    let (source, manifest, wit, tool) = match lang {
        "rust" => (
            "src/lib.rs",
            "Cargo.toml",
            "vendor/sdk/wit/worlds.wit",
            "running: cargo build --release --target wasm32-wasip2",
        ),
        "python" => (
            "src/app.py",
            "pyproject.toml",
            "wit/worlds.wit",
            "componentize-py -d wit -w",
        ),
        _ => (
            "src/app.js",
            "package.json",
            "wit/worlds.wit",
            "jco componentize src/app.js --wit wit -n",
        ),
    };
    for file in [source, manifest, wit, "events.jsonl", "README.md"] {
        ensure!(
            dir.join(file).is_file(),
            "plugin new wrote no {file}: {out}"
        );
    }
    ensure!(dir.join(format!("{name}.toml")).is_file(), "no sample rule");
    let started = std::time::Instant::now();
    let (code, out, err) = tocsin(&dir, &["plugin", "build"])?;
    ensure!(code == 0, "plugin build: {out}{err}");
    ensure!(out.contains(tool), "build says what it runs: {out}");
    let wasm = dir.join(format!("{name}.wasm"));
    ensure!(wasm.is_file(), "no {name}.wasm: {out}");
    let installed = out
        .lines()
        .find(|l| l.starts_with("installed "))
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    record_figure(&format!(
        "plugin_kit: {lang} {world} build {:.1} s, {} KiB{installed}",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&wasm)?.len() / 1024
    ));
    Ok(dir)
}

/// Runs the project's own unit tests natively (`cargo test`, `python3 -m
/// unittest`, `npm test`) and checks that all `n` ran and passed.
fn unit_tests(dir: &Path, lang: &str, n: usize) -> Result<()> {
    let (mut c, passed) = match lang {
        "rust" => {
            let mut c = Command::new("cargo");
            c.args(["test", "--quiet"])
                .env("CARGO_TARGET_DIR", root().join("target").join("plugin-kit"));
            (c, format!("{n} passed"))
        }
        "python" => {
            let mut c = Command::new("python3");
            c.args(["-m", "unittest", "discover", "-s", "tests"]);
            (c, format!("Ran {n} test"))
        }
        _ => {
            let mut c = Command::new("npm");
            c.arg("test");
            (c, format!("# pass {n}\n# fail 0"))
        }
    };
    let out = c
        .current_dir(dir)
        .output()
        .with_context(|| format!("running the {lang} project's unit tests"))?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success() && printed.contains(&passed),
        "the new {lang} project's unit tests: {printed}"
    );
    Ok(())
}

/// `plugin test` on the project's sample events (with the binding's
/// configuration `config`); its JSON report.
fn plugin_test(dir: &Path, name: &str, config: &str) -> Result<Value> {
    plugin_test_with(dir, name, "events.jsonl", config, &[])
}

/// `plugin test` on `events` with `config` and `extra` arguments; its JSON
/// report, once it succeeded.
fn plugin_test_with(
    dir: &Path,
    name: &str,
    events: &str,
    config: &str,
    extra: &[&str],
) -> Result<Value> {
    let wasm = format!("{name}.wasm");
    let mut args = vec![
        "plugin", "test", &wasm, "--events", events, "--config", config,
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = tocsin(dir, &args)?;
    ensure!(code == 0, "plugin test {events}: {out}{err}");
    serde_json::from_str(&out).with_context(|| format!("plugin test printed no JSON: {out}"))
}

/// Sustained load under a tight cap: 20,000 events in engine-sized batches
/// through the aggregator with a 16 MiB cap count exactly (one alert per 50
/// events of a key), with no failed call. A ComponentizeJS instance, whose
/// memory only grows (~0.85 KB per event), must have been renewed at its
/// recycle mark on the way, not trapped at its cap.
fn sustained(dir: &Path, name: &str, lang: &str) -> Result<()> {
    let events: String = (0..20_000)
        .map(|i| {
            let e = tocsin_tests::event(
                &format!("CODE_{}", i % 40),
                "high",
                "svc",
                &format!("e {i}"),
            );
            format!("{e}\n")
        })
        .collect();
    std::fs::write(dir.join("sustained.jsonl"), events)?;
    // The figure is memory, not speed: a debug build on a busy machine.
    let extra = [
        "--memory-mb",
        "16",
        "--call-timeout-ms",
        "10000",
        "--batch",
        "256",
    ];
    let config = r#"{"threshold": 50, "window": "1h"}"#;
    let report = plugin_test_with(dir, name, "sustained.jsonl", config, &extra)
        .with_context(|| format!("sustained {lang}"))?;
    let alerts = report["alerts"].as_array().map_or(0, Vec::len);
    ensure!(
        alerts == 400,
        "20,000 events over 40 keys, threshold 50: {alerts} alerts"
    );
    let memory = &report["memory"];
    ensure!(memory["peak_bytes"].as_u64().unwrap_or(0) > 0, "{memory}");
    if lang == "js" {
        ensure!(memory["recycled"].as_u64().unwrap_or(0) >= 1, "{memory}");
    }
    eprintln!("sustained {lang}: {memory}");
    Ok(())
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
    // Compiling a 12-18 MB Python or JS component takes a while on a busy
    // machine (once: the artifact is cached by content hash).
    wait_for(
        &format!("rule {name} to serve"),
        Duration::from_secs(300),
        || async {
            let r = t.rule_status(name).await.unwrap_or_default();
            Ok(r["active"] == true && r["last_error"].is_null())
        },
    )
    .await
}

/// The author's whole path in `lang`, for an aggregator and a channel:
/// new → unit tests → build → `plugin test` shows the alert and the
/// delivery → both dropped into a running engine → posted events reach
/// `/v1/ws`, through the aggregator and through the channel.
async fn kit_flow(lang: &str) -> Result<()> {
    let tmp = TempDir::new(&format!("plugin-kit-{lang}"))?;
    let agg_name = format!("{lang}-agg");
    let chan_name = format!("{lang}-chan");
    let agg = new_and_build(tmp.path(), &agg_name, "aggregator", lang)?;
    unit_tests(&agg, lang, 2)?;
    let report = plugin_test(&agg, &agg_name, "{}")?;
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
    sustained(&agg, &agg_name, lang)?;

    // The router example: its unit tests (natively; the engine runs routers
    // as it runs the other worlds).
    let router = format!("{lang}-router");
    let (code, out, err) = tocsin(
        tmp.path(),
        &[
            "plugin", "new", &router, "--world", "router", "--lang", lang,
        ],
    )?;
    ensure!(code == 0, "plugin new {router}: {out}{err}");
    unit_tests(&tmp.path().join(&router), lang, 1)?;

    let chan = new_and_build(tmp.path(), &chan_name, "channel", lang)?;
    unit_tests(&chan, lang, 1)?;
    let prefix = format!(r#"{{"prefix": "[{chan_name}]"}}"#);
    let report = plugin_test(&chan, &chan_name, &prefix)?;
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
            .contains(&format!("[{chan_name}] DEVICE_START_FAILED")),
        "{report}"
    );

    // Python: the engine starts with the aggregator already in its folders
    // and a compile cache without it, so the 18 MB component compiles at
    // start-up — in the background: the engine serves at once and the rule
    // says it waits. Rust and JavaScript: both plugins are dropped into a
    // running engine (hot reload).
    let at_start = lang == "python";
    let mut env = Setup::default().env;
    if at_start {
        let cache = tmp.path().join("fresh-engine-cache");
        env.push(("TOCSIN_ENGINE_CACHE".into(), cache.display().to_string()));
    }
    let mut t = Tocsin::start(Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        env,
        ..Setup::default()
    })
    .await?;
    let started = std::time::Instant::now();
    if at_start {
        t.stop()?;
        std::fs::copy(
            agg.join(format!("{agg_name}.wasm")),
            t.plugins_dir.join(format!("{agg_name}.wasm")),
        )?;
        std::fs::copy(
            agg.join(format!("{agg_name}.toml")),
            t.rules_dir.join(format!("{agg_name}.toml")),
        )?;
        t.spawn().await?;
        let up = started.elapsed().as_secs_f64();
        let rule = t.rule_status(&agg_name).await?;
        let waiting = rule["waiting"].as_str().unwrap_or("");
        ensure!(
            rule["active"] == false
                && rule["last_error"].is_null()
                && waiting.contains(&format!("waiting for plugin `{agg_name}` to compile")),
            "the rule waits for its plugin, and says so: {rule}"
        );
        let plugin = t.plugin_status(&agg_name).await?;
        ensure!(plugin["compiling_for_s"].is_u64(), "{plugin}");
        wait_for(
            &format!("rule {agg_name} to serve once compiled"),
            Duration::from_secs(300),
            || async {
                let r = t.rule_status(&agg_name).await.unwrap_or_default();
                Ok(r["active"] == true && r["waiting"].is_null())
            },
        )
        .await?;
        record_figure(&format!(
            "plugin_kit: python aggregator at start-up, uncached: engine serving after {up:.1} s, the rule after {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    } else {
        install(&t, &agg, &agg_name).await?;
    }
    install(&t, &chan, &chan_name).await?;
    record_figure(&format!(
        "plugin_kit: {lang} aggregator and channel both serving {:.1} s after the engine started",
        started.elapsed().as_secs_f64()
    ));
    let mut by_agg = t.ws(&format!("?rule={agg_name}")).await?;
    let mut by_chan = t.ws(&format!("?rule={chan_name}")).await?;
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
        title.starts_with(&format!("[{chan_name}] DEVICE_START_FAILED")),
        "the channel's own frame: {frame}"
    );
    Ok(())
}

#[tokio::test]
async fn a_new_rust_aggregator_and_channel_reach_a_running_engine() -> Result<()> {
    kit_flow("rust").await
}

/// Built by `tocsin plugin build` with componentize-py's default options.
#[tokio::test]
async fn a_new_python_aggregator_and_channel_reach_a_running_engine() -> Result<()> {
    kit_flow("python").await
}

/// Built by `tocsin plugin build` with jco's default options.
#[tokio::test]
async fn a_new_javascript_aggregator_and_channel_reach_a_running_engine() -> Result<()> {
    kit_flow("js").await
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
