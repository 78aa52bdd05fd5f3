//! Events/s through the aggregation stage: the `threshold` WebAssembly
//! plugin versus the very same logic (`plugins/threshold/src/logic.rs`)
//! compiled natively, both against the host's embedded state store, on one
//! core (a current-thread runtime).
//!
//! Then, when `TOCSIN_BENCH_LANGS` lists them (`cargo xtask bench` builds
//! them with `tocsin plugin new` + `tocsin plugin build`), the aggregator
//! template — the same windowed counter — as a Rust, a Python and a
//! JavaScript component: events/s, compile time, the first call
//! (instantiate + configure) and the linear memory of one instance.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p tocsin --bench aggregate`
//! after `cargo xtask plugins`). Prints tables; nothing is asserted but
//! that the paths agree on the alerts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::tocsin::event::{Event, Severity};
use ::tocsin::plugin::bindings::{ErrorEvent, WitSeverity};
use ::tocsin::plugin::instance::{BindingConfig, PluginUse};
use ::tocsin::plugin::{HostSettings, Instances, Runtime, SandboxLimits};
use ::tocsin::state::{scoped_key, EmbeddedState, StateOps, StateStore, StateView};
use futures::FutureExt;

/// The embedded store's operations complete at once (its futures are
/// ready), so the native logic calls them synchronously, as the guest does.
fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
    f.now_or_never()
        .expect("embedded state operations are synchronous")
}

/// The same event as the SDK's type (what the plugin's logic takes),
/// converted before any timing.
fn to_sdk(e: &ErrorEvent) -> tocsin_plugin_sdk::aggregator::ErrorEvent {
    use tocsin_plugin_sdk::aggregator::Severity as S;
    tocsin_plugin_sdk::aggregator::ErrorEvent {
        event_id: e.event_id.clone(),
        source: e.source.clone(),
        error_code: e.error_code.clone(),
        severity: match e.severity {
            WitSeverity::Critical => S::Critical,
            WitSeverity::High => S::High,
            WitSeverity::Medium => S::Medium,
            WitSeverity::Low => S::Low,
        },
        message: e.message.clone(),
        service_name: e.service_name.clone(),
        timestamp: e.timestamp,
        received_at: e.received_at,
        user_message: e.user_message.clone(),
        user_id: e.user_id.clone(),
        stack_trace: e.stack_trace.clone(),
        metadata: e.metadata.clone(),
    }
}

#[allow(dead_code)]
#[path = "../../plugins/threshold/src/logic.rs"]
mod logic;

const KEYS: usize = 100;
const EVENTS: usize = 200_000;
const CONFIG: &str = r#"{"threshold": 50, "window": "1h", "samples": 5}"#;

fn events() -> Vec<ErrorEvent> {
    let source: Arc<str> = Arc::from("bench");
    (0..EVENTS)
        .map(|i| {
            let e = Event {
                event_id: format!("0193a5c2-7d1e-7000-8000-{i:012}"),
                source: source.clone(),
                error_code: "DEVICE_START_FAILED".into(),
                severity: Severity::High,
                message: format!(
                    "container for device d-{i} exited with code 137 during start (OOMKilled)"
                ),
                service_name: format!("device-service-{}", i % KEYS),
                timestamp: 1_700_000_000_000 + i as i64,
                received_at: 1_700_000_000_000 + i as i64,
                user_message: None,
                user_id: Some(format!("user-{}", i % 977)),
                stack_trace: None,
                metadata: [
                    ("deviceId".to_string(), format!("d-{i}")),
                    ("region".to_string(), "eu-west-1".to_string()),
                ]
                .into(),
                dedup: false,
                resolved: false,
                only_rules: None,
            };
            ErrorEvent::from(&e)
        })
        .collect()
}

/// The host state behind the plugin's `State` trait, as the WIT
/// capability does it (keys scoped to the rule).
struct NativeState<'a> {
    store: &'a EmbeddedState,
    rule: &'a str,
}

impl logic::State for NativeState<'_> {
    fn window_add(
        &mut self,
        key: &str,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> tocsin_plugin_sdk::WindowHit {
        let h = ready(self.store.window_add(
            &scoped_key(self.rule, key),
            delta,
            now,
            window_ms,
            threshold,
        ));
        tocsin_plugin_sdk::WindowHit {
            before: h.before,
            fires: h.fires,
            after: h.after,
            window_start: h.window_start,
        }
    }
    fn set_if_absent(&mut self, key: &str, value: &str, ttl_ms: Option<u64>) -> bool {
        ready(
            self.store
                .set_if_absent(&scoped_key(self.rule, key), value.to_string(), ttl_ms),
        )
    }
    fn delete(&mut self, key: &str) {
        ready(self.store.delete(&scoped_key(self.rule, key)))
    }
    fn list_push(&mut self, key: &str, value: &str, max_len: u32, ttl_ms: Option<u64>) -> u32 {
        ready(self.store.list_push(
            &scoped_key(self.rule, key),
            value.to_string(),
            max_len,
            ttl_ms,
        ))
    }
    fn list_take(&mut self, key: &str) -> Vec<String> {
        ready(self.store.list_take(&scoped_key(self.rule, key)))
    }
    fn debug(&mut self, _message: &str) {}
}

fn tempdir(label: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tocsin-bench-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The one binding every benchmark configures, rule `bench`.
fn binding(config: &str) -> Vec<BindingConfig> {
    vec![BindingConfig {
        id: "bench".into(),
        rule: Arc::from("bench"),
        config_json: config.into(),
    }]
}

struct Figure {
    label: String,
    per_sec: f64,
}

async fn run_wasm(
    events: &[ErrorEvent],
    batch: usize,
    rounds: usize,
) -> anyhow::Result<(f64, usize)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // `TOCSIN_BENCH_PLUGIN` points at another build (e.g. unstripped, to profile).
    let path = std::env::var_os("TOCSIN_BENCH_PLUGIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("plugins/dist/threshold.wasm"));
    let wasm = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!("plugins/dist/threshold.wasm: {e} (run `cargo xtask plugins`)")
    })?;
    let state = StateStore::open_embedded(&tempdir("wasm-state"))?;
    let rt = Runtime::new(
        SandboxLimits {
            call_timeout: Duration::from_secs(5),
            ..SandboxLimits::default()
        },
        state,
        HostSettings::default(),
        Some(tempdir("cache")),
    )?;
    let plugin = Arc::new(rt.load_plugin("threshold", &wasm)?);
    let bindings = binding(CONFIG);
    let u = PluginUse {
        plugin: &plugin,
        bindings: &bindings,
        generation: 1,
    };
    let mut instances = Instances::new(rt.clone());
    let view = StateView::Direct(rt.state().clone());
    let rule: Arc<str> = Arc::from("bench");
    // Warm up: instantiate, configure, fault in memory.
    // (under another rule, so its state does not change the counts).
    instances
        .aggregate(
            u,
            "bench",
            Arc::from("warm-up"),
            &events[..batch.min(events.len())],
            view.clone(),
        )
        .await?;
    let mut best = 0f64;
    let mut alerts = 0usize;
    for _ in 0..rounds {
        let started = Instant::now();
        for chunk in events.chunks(batch) {
            alerts += instances
                .aggregate(u, "bench", rule.clone(), chunk, view.clone())
                .await?
                .len();
        }
        best = best.max(events.len() as f64 / started.elapsed().as_secs_f64());
    }
    Ok((best, alerts))
}

fn run_native(
    events: &[tocsin_plugin_sdk::aggregator::ErrorEvent],
    batch: usize,
    rounds: usize,
) -> anyhow::Result<(f64, usize)> {
    let store = EmbeddedState::open(&tempdir("native-state"))?;
    let config = logic::Config::parse(CONFIG).map_err(anyhow::Error::msg)?;
    let mut state = NativeState {
        store: &store,
        rule: "bench",
    };
    let mut best = 0f64;
    let mut alerts = 0usize;
    for _ in 0..rounds {
        let started = Instant::now();
        for chunk in events.chunks(batch) {
            let out: Vec<tocsin_plugin_sdk::aggregator::Alert> =
                logic::aggregate(&config, chunk, &mut state).map_err(anyhow::Error::msg)?;
            alerts += out.len();
        }
        best = best.max(events.len() as f64 / started.elapsed().as_secs_f64());
    }
    Ok((best, alerts))
}

/// Events of the language comparison (Python and JavaScript run at tens of
/// thousands of events/s: a smaller set keeps a round short).
const LANG_EVENTS: usize = 50_000;
/// The templates' configuration: alert every 50 events per key.
const TEMPLATE_CONFIG: &str = r#"{"threshold": 50, "window": "1h"}"#;

/// One language's row.
struct LangFigure {
    lang: String,
    size: usize,
    compile_ms: f64,
    first_call_ms: f64,
    memory_start: usize,
    memory_peak: usize,
    renewed: u64,
    per_sec: f64,
    alerts: usize,
}

/// The aggregator template built in one language, at `path`.
async fn run_language(
    lang: &str,
    path: &std::path::Path,
    events: &[ErrorEvent],
) -> anyhow::Result<LangFigure> {
    let wasm = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let state = StateStore::open_embedded(&tempdir(&format!("{lang}-state")))?;
    // The engine's default memory cap (an instance that only grows is
    // renewed at its recycle mark, as in the engine: the rate includes
    // that); a generous deadline, since the figure is the rate.
    let rt = Runtime::new(
        SandboxLimits {
            call_timeout: Duration::from_secs(5),
            ..SandboxLimits::default()
        },
        state,
        HostSettings::default(),
        None,
    )?;
    let started = Instant::now();
    let plugin = Arc::new(rt.load_plugin(lang, &wasm)?);
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let bindings = binding(TEMPLATE_CONFIG);
    let u = PluginUse {
        plugin: &plugin,
        bindings: &bindings,
        generation: 1,
    };
    let mut instances = Instances::new(rt.clone());
    let view = StateView::Direct(rt.state().clone());
    let started = Instant::now();
    instances
        .aggregate(u, "bench", Arc::from("warm-up"), &events[..1], view.clone())
        .await?;
    let first_call_ms = started.elapsed().as_secs_f64() * 1e3;
    let memory_start = instances.memory_in_use();
    let mut best = 0f64;
    let mut alerts = 0usize;
    for round in 0..3 {
        let started = Instant::now();
        let mut n = 0;
        for chunk in events.chunks(256) {
            n += instances
                .aggregate(
                    u,
                    "bench",
                    Arc::from(format!("bench-{round}")),
                    chunk,
                    view.clone(),
                )
                .await?
                .len();
        }
        best = best.max(events.len() as f64 / started.elapsed().as_secs_f64());
        alerts = n;
    }
    Ok(LangFigure {
        lang: lang.to_string(),
        size: wasm.len(),
        compile_ms,
        first_call_ms,
        memory_start,
        memory_peak: instances.memory_peak(),
        renewed: instances.recycled(),
        per_sec: best,
        alerts,
    })
}

/// The language comparison, when `TOCSIN_BENCH_LANGS` (`lang=path;…`)
/// names the components.
fn languages(rt: &tokio::runtime::Runtime, events: &[ErrorEvent]) -> anyhow::Result<()> {
    let Ok(list) = std::env::var("TOCSIN_BENCH_LANGS") else {
        return Ok(());
    };
    let events = &events[..LANG_EVENTS.min(events.len())];
    let mut rows = Vec::new();
    for item in list.split(';').filter(|i| !i.is_empty()) {
        let (lang, path) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("TOCSIN_BENCH_LANGS: {item:?} is not lang=path"))?;
        rows.push(rt.block_on(run_language(lang, std::path::Path::new(path), events))?);
    }
    if let Some(first) = rows.first() {
        for r in &rows {
            anyhow::ensure!(
                r.alerts == first.alerts,
                "{} and {} disagree: {} vs {} alerts",
                r.lang,
                first.lang,
                r.alerts,
                first.alerts
            );
        }
    }
    let rust = rows
        .iter()
        .find(|r| r.lang == "rust")
        .map_or(1.0, |r| r.per_sec);
    println!();
    println!(
        "same logic (the aggregator template: windowed counter in host state), {} events over {KEYS} keys, batch 256, best of 3 rounds",
        events.len()
    );
    println!(
        "{:<12} {:>10} {:>11} {:>14} {:>20} {:>8} {:>12} {:>9}",
        "language",
        "component",
        "compile",
        "first call",
        "linear mem",
        "renewed",
        "events/s",
        "vs Rust"
    );
    for r in &rows {
        println!(
            "{:<12} {:>7.1} MB {:>8.0} ms {:>11.1} ms {:>8.1} → {:>6.1} MB {:>8} {:>12.0} {:>8.1}x",
            r.lang,
            r.size as f64 / 1e6,
            r.compile_ms,
            r.first_call_ms,
            r.memory_start as f64 / 1e6,
            r.memory_peak as f64 / 1e6,
            r.renewed,
            r.per_sec,
            rust / r.per_sec
        );
    }
    println!("(compile: uncached, this machine; first call: instantiate + configure + one event; linear mem: one instance after its first call → its peak; renewed: instances retired at their recycle mark, 3/4 of the default 64 MiB cap)");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let events = events();
    let bytes: usize = events
        .iter()
        .map(|e| {
            e.message.len() + e.event_id.len() + e.service_name.len() + e.error_code.len() + 60
        })
        .sum();
    println!("aggregation stage, one core: {EVENTS} events over {KEYS} keys (~{} bytes each), threshold 50, best of 5 rounds", bytes / EVENTS);
    // `TOCSIN_BENCH_ONLY=languages` runs just the language table.
    if std::env::var("TOCSIN_BENCH_ONLY").as_deref() == Ok("languages") {
        return languages(&rt, &events);
    }
    // `TOCSIN_BENCH_ONLY=wasm` runs just the batch-256 WASM path (for profiling).
    if std::env::var("TOCSIN_BENCH_ONLY").as_deref() == Ok("wasm") {
        let (wasm, _) = rt.block_on(run_wasm(&events, 256, 20))?;
        println!("wasm plugin, batch 256: {wasm:.0} events/s");
        return Ok(());
    }
    let mut figures = Vec::new();
    let (native, native_alerts) =
        run_native(&events.iter().map(to_sdk).collect::<Vec<_>>(), 256, 5)?;
    figures.push(Figure {
        label: "native Rust, batch 256".into(),
        per_sec: native,
    });
    for batch in [1usize, 16, 64, 256, 512] {
        let (wasm, alerts) = rt.block_on(run_wasm(&events, batch, 5))?;
        if batch == 256 {
            anyhow::ensure!(
                alerts == native_alerts,
                "wasm and native disagree: {alerts} vs {native_alerts} alerts"
            );
        }
        figures.push(Figure {
            label: format!("wasm plugin, batch {batch}"),
            per_sec: wasm,
        });
    }
    println!(
        "{:<28} {:>14} {:>10} {:>12}",
        "path", "events/s", "ns/event", "vs native"
    );
    for f in &figures {
        println!(
            "{:<28} {:>14.0} {:>10.0} {:>11.2}x",
            f.label,
            f.per_sec,
            1e9 / f.per_sec,
            native / f.per_sec
        );
    }
    languages(&rt, &events)
}
