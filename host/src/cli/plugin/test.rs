//! `tocsin plugin test FILE --events FILE`: one plugin, run by the
//! engine's own instance code under the engine's sandbox (deadline, memory
//! cap, capability grants) on a throw-away embedded state, printing what
//! it did as JSON. No engine, no rule file, no network: what it prints is
//! what the plugin would have handed the engine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use super::{read_wasm, scratch_runtime, SandboxArgs, Scratch};
use crate::deliver::Delivery;
use crate::event::{now_ms, parse_event, Event, Severity};
use crate::plugin::bindings::{Alert, ErrorEvent};
use crate::plugin::instance::{BindingConfig, PluginUse};
use crate::plugin::{CallError, Grants, Instances, LoadedPlugin, World};
use crate::state::StateView;

/// Arguments of `tocsin plugin test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// The .wasm file.
    pub file: PathBuf,
    /// Sample events: JSON lines, or one JSON array, in the `/v1/events`
    /// format. An aggregator counts them; a router or channel gets one
    /// alert per error code and service among them.
    #[arg(long)]
    pub events: PathBuf,
    /// The binding's configuration as JSON (what a rule's `config` table
    /// becomes), or `@FILE` to read it from a file.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// When the events arrive (their `received-at`, which aggregators
    /// count windows by): RFC 3339 (`2026-12-01T09:00:00Z`) or ms since
    /// the epoch. Default: now. Events keep their own `timestamp`.
    #[arg(long)]
    pub now: Option<String>,
    /// Events per `aggregate` call, as the engine batches them (at most
    /// this many per call).
    #[arg(long, default_value_t = crate::pipeline::MAX_BATCH)]
    pub batch: usize,
    /// The rule name the plugin sees.
    #[arg(long, default_value = "test")]
    pub rule: String,
    /// Channels a router may choose from.
    #[arg(long, value_delimiter = ',', default_value = "websocket,email,webhook")]
    pub channels: Vec<String>,
    /// What the rule grants a channel, as JSON (`{"websocket": true,
    /// "email": ["default"], "http": ["hooks.example.com"]}`).
    #[arg(long, default_value = r#"{"websocket": true, "email": ["default"]}"#)]
    pub grants: String,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Runs the plugin and prints the report; 0 when every call succeeded.
pub async fn run(args: TestArgs) -> anyhow::Result<i32> {
    let bytes = read_wasm(&args.file)?;
    let received_at = match &args.now {
        Some(text) => parse_now(text)?,
        None => now_ms(),
    };
    let events = read_events(&args.events, received_at)?;
    let config_json = match args.config.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => args.config.clone(),
    };
    serde_json::from_str::<Value>(&config_json).context("--config is not valid JSON")?;
    let grants: Grants = serde_json::from_str(&args.grants).context("--grants")?;
    let scratch = Scratch::new()?;
    let rt = scratch_runtime(&args.sandbox, &scratch.0)?;
    let name = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let plugin = match rt.load_plugin(&name, &bytes) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return Ok(1);
        }
    };
    let rule: Arc<str> = Arc::from(args.rule.as_str());
    let binding = BindingConfig {
        id: args.rule.clone(),
        rule: rule.clone(),
        config_json,
    };
    let mut report = json!({ "plugin": name, "world": plugin.world });
    let mut instances = Instances::new(rt.clone());
    let outcome = match Instances::check_configure(&rt, &plugin, &binding).await {
        Err(e) => Err(("configure", e)),
        Ok(()) => {
            let bindings = [binding];
            let u = PluginUse {
                plugin: &plugin,
                bindings: &bindings,
                generation: 1,
            };
            call(
                &mut instances,
                u,
                &args,
                rule,
                &events,
                Arc::new(grants),
                &mut report,
            )
            .await
        }
    };
    let logs: Vec<Value> = instances
        .take_logs()
        .into_iter()
        .map(|(level, message)| json!({ "level": level, "message": message }))
        .collect();
    report["logs"] = Value::Array(logs);
    // What the sandbox saw of the instance: how close it came to its cap,
    // and how often it was renewed at its recycle mark.
    report["memory"] = json!({
        "peak_bytes": instances.memory_peak(),
        "cap_bytes": rt.limits().memory_of(&name),
        "recycled": instances.recycled(),
    });
    let code = match outcome {
        Ok(()) => 0,
        Err((call, e)) => {
            report["error"] = json!({ "call": call, "kind": e.kind(), "message": e.to_string() });
            1
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(code)
}

/// Calls the plugin's world function; records its output in `report`.
async fn call(
    instances: &mut Instances,
    u: PluginUse<'_>,
    args: &TestArgs,
    rule: Arc<str>,
    events: &[ErrorEvent],
    grants: Arc<Grants>,
    report: &mut Value,
) -> Result<(), (&'static str, CallError)> {
    let plugin: &LoadedPlugin = u.plugin;
    match plugin.world {
        World::Aggregator => {
            let view = StateView::Direct(instances_state(instances));
            let mut alerts = Vec::new();
            for chunk in events.chunks(args.batch.max(1)) {
                let batch = instances
                    .aggregate(u, &args.rule, rule.clone(), chunk, view.clone())
                    .await
                    .map_err(|e| ("aggregate", e))?;
                alerts.extend(batch);
            }
            // As the pipeline does: the host names the rule.
            for a in alerts.iter_mut().filter(|a| a.rule.is_empty()) {
                a.rule = args.rule.clone();
            }
            report["alerts"] = alerts.iter().map(alert_json).collect();
        }
        World::Router => {
            let mut routes = Vec::new();
            for alert in sample_alerts(&args.rule, events) {
                let chosen = instances
                    .route(u, &args.rule, rule.clone(), &alert, &args.channels)
                    .await
                    .map_err(|e| ("route", e))?;
                routes.push(json!({ "alert": alert_json(&alert), "channels": chosen }));
            }
            report["routes"] = Value::Array(routes);
        }
        World::Channel => {
            let mut out = Vec::new();
            for alert in sample_alerts(&args.rule, events) {
                let deliveries = instances
                    .deliver(u, &args.rule, rule.clone(), grants.clone(), &alert)
                    .await
                    .map_err(|e| ("deliver", e))?;
                out.extend(deliveries.iter().map(delivery_json));
            }
            report["deliveries"] = Value::Array(out);
        }
    }
    Ok(())
}

/// The runtime's (scratch) state store.
fn instances_state(instances: &Instances) -> crate::state::StateStore {
    instances.runtime().state().clone()
}

/// Reads sample events (JSON lines or one array), saying which line is bad.
fn read_events(path: &std::path::Path, received_at: i64) -> anyhow::Result<Vec<ErrorEvent>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let source: Arc<str> = Arc::from("plugin-test");
    let values: Vec<(usize, Value)> = if text.trim_start().starts_with('[') {
        let all: Vec<Value> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON array", path.display()))?;
        all.into_iter().enumerate().collect()
    } else {
        let mut values = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
            values.push((n, value));
        }
        values
    };
    let mut events: Vec<Event> = Vec::new();
    for (n, value) in values {
        match parse_event(n, &value, &source, received_at) {
            Ok(e) => events.push(e),
            Err(errors) => {
                let reasons: Vec<String> = errors.iter().map(|e| e.reason.clone()).collect();
                let field = errors.first().map(|e| e.field.clone()).unwrap_or_default();
                anyhow::bail!(
                    "{} (event {}): {field}: {}",
                    path.display(),
                    n + 1,
                    reasons.join("; ")
                );
            }
        }
    }
    Ok(events.iter().map(ErrorEvent::from).collect())
}

/// `--now`: RFC 3339 or ms since the epoch.
fn parse_now(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            anyhow::anyhow!(
                "--now {text:?}: expected RFC 3339 (2026-12-01T09:00:00Z) or ms since the epoch ({e})"
            )
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).context("--now is out of range")
}

/// One alert per error code and service among `events`: what a router or
/// channel gets from an aggregator.
fn sample_alerts(rule: &str, events: &[ErrorEvent]) -> Vec<Alert> {
    let mut alerts: Vec<Alert> = Vec::new();
    for e in events {
        let key = format!("{}|{}", e.error_code, e.service_name);
        if let Some(a) = alerts.iter_mut().find(|a| a.key == key) {
            a.count += 1;
            a.last_seen = a.last_seen.max(e.timestamp);
            continue;
        }
        alerts.push(Alert {
            key,
            rule: rule.to_string(),
            count: 1,
            first_seen: e.timestamp,
            last_seen: e.timestamp,
            severity: e.severity,
            title: format!("{} on {}", e.error_code, e.service_name),
            summary: e.message.clone(),
            samples: vec![e.message.clone()],
            labels: vec![
                ("error-code".into(), e.error_code.clone()),
                ("service".into(), e.service_name.clone()),
            ],
        });
    }
    alerts
}

/// An alert as JSON, in the history's field names.
fn alert_json(a: &Alert) -> Value {
    let labels: serde_json::Map<String, Value> = a
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "rule": a.rule, "key": a.key, "count": a.count,
        "severity": Severity::from(a.severity).as_str(),
        "title": a.title, "summary": a.summary, "samples": a.samples,
        "labels": labels, "firstSeen": a.first_seen, "lastSeen": a.last_seen,
    })
}

/// A delivery as JSON, bodies as text.
fn delivery_json(d: &Delivery) -> Value {
    match d {
        Delivery::WebSocket { body } => json!({ "kind": "websocket", "body": body }),
        Delivery::Email(m) => json!({
            "kind": "email", "to": m.to, "subject": m.subject, "text": m.text, "html": m.html,
        }),
        Delivery::Http(r) => json!({
            "kind": "http", "method": r.method, "url": r.url, "headers": r.headers,
            "body": String::from_utf8_lossy(&r.body),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_reads_rfc3339_or_milliseconds() {
        assert_eq!(parse_now("1764547200000").unwrap(), 1_764_547_200_000);
        assert_eq!(
            parse_now("2025-12-01T00:00:01Z").unwrap(),
            1_764_547_201_000
        );
        let e = parse_now("yesterday").unwrap_err().to_string();
        assert!(e.contains("--now \"yesterday\": expected RFC 3339"), "{e}");
    }
}
