//! The fuzz targets' bodies: one function per parser reachable from
//! outside, each taking raw bytes as a request or a dropped file brings
//! them. `fuzz/` (libFuzzer, `cargo xtask fuzz`) calls these, and a unit
//! test runs every committed seed and regression input through them, so
//! a crash once found stays fixed without the fuzzer installed.
//!
//! Each must never panic, whatever the bytes; what they return is
//! ignored (a refusal is a fine outcome).

use std::sync::Arc;

use crate::config::{Config, IngestConfig};
use crate::source::{alertmanager, body, sentry};

/// A fixed "now" (2025-12-01), so runs are repeatable.
const NOW: i64 = 1_764_547_200_000;

/// A target: raw bytes in, nothing out (it must not panic).
pub type Target = fn(&[u8]);

/// Every target, by the name its `fuzz/fuzz_targets/<name>.rs` has.
pub const TARGETS: &[(&str, Target)] = &[
    ("events", events),
    ("sentry", sentry),
    ("alertmanager", alertmanager),
    ("body", body),
    ("rule", rule),
    ("config", config),
];

/// `POST /v1/events`: one event or an array, in the seed's format; an
/// accepted event is serialised as the stream shows it.
pub fn events(data: &[u8]) {
    let source: Arc<str> = Arc::from("http");
    if let Ok(events) = crate::event::parse_batch(data, &source, NOW) {
        for e in &events {
            let _ = serde_json::to_string(e);
        }
    }
}

/// A Sentry envelope and its event items (`/api/{project}/envelope/`),
/// and the same bytes as the store endpoint's one JSON event.
pub fn sentry(data: &[u8]) {
    let cfg = IngestConfig::default();
    let ctx = sentry::Ctx::new(&cfg, "42");
    if let Ok(envelope) = sentry::parse_envelope(data) {
        let header_id = envelope
            .header
            .get("event_id")
            .and_then(serde_json::Value::as_str);
        for item in &envelope.items {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(item.payload) {
                let _ = sentry::map_event(item.index, &value, &ctx, header_id, NOW);
            }
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = sentry::map_event(0, &value, &ctx, None, NOW);
    }
}

/// Alertmanager's API (an array of alerts) and its webhook payload
/// (`{"alerts": [...]}`, with the receiver as an extra label).
pub fn alertmanager(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Some(items) = value.as_array() {
        let _ = alertmanager::parse_alerts(items, false, &[], NOW);
    }
    if let Some(items) = value.get("alerts").and_then(serde_json::Value::as_array) {
        let extra = [("alertmanager.receiver".to_string(), "fuzz".to_string())];
        let _ = alertmanager::parse_alerts(items, true, &extra, NOW);
    }
}

/// A body under `Content-Encoding` (the first byte picks one of
/// [`ENCODINGS`]), decoded under a 1 MiB limit: the output never passes
/// it, whatever the input claims (decompression bombs).
pub fn body(data: &[u8]) {
    const LIMIT: usize = 1 << 20;
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let encoding = ENCODINGS[usize::from(*first) % ENCODINGS.len()];
    let raw = axum::body::Bytes::copy_from_slice(rest);
    if let Ok(out) = body::decode(encoding, raw, LIMIT) {
        assert!(
            out.len() <= LIMIT,
            "decoded {} bytes past the limit",
            out.len()
        );
    }
}

/// The encodings [`body`] chooses from.
pub const ENCODINGS: [&str; 7] = [
    "gzip",
    "deflate",
    "br",
    "identity",
    "gzip, br",
    "deflate, gzip",
    "x-gzip",
];

/// A rule file, as the watcher reads one dropped in the folder.
pub fn rule(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::catalog::rule::parse(text);
    }
}

/// The configuration file, with one `TOCSIN_*=value` variable taken from
/// the input's first line.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or(("", text));
    let env = first
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()));
    let _ = Config::from_text("fuzz.toml", rest, env);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every committed input (`fuzz/seeds/<target>/`, and the crashes
    /// found, `fuzz/regressions/<target>/`) goes through its target.
    #[test]
    fn seeds_and_regressions_do_not_panic() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut ran = 0;
        for (name, target) in super::TARGETS {
            for kind in ["seeds", "regressions"] {
                let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(name)) else {
                    continue;
                };
                for entry in dir.flatten() {
                    let data = std::fs::read(entry.path()).expect("reading an input");
                    target(&data);
                    ran += 1;
                }
            }
        }
        assert!(
            ran >= super::TARGETS.len(),
            "only {ran} inputs found under {fuzz:?}"
        );
    }
}
