//! The threshold algorithm, kept apart from the host imports so it can be
//! unit-tested natively against a fake [`State`].
//!
//! Cost model: per batch, one `window-add` per *distinct key* (not per
//! event), plus a few list operations for samples only while a window still
//! has room for them. That is what makes large batches cheap.

use tocsin_plugin_sdk::aggregator::{Alert, ErrorEvent, Severity};
use tocsin_plugin_sdk::{format_duration, Table, WindowHit};

/// Upper bound for `samples`: samples travel in every alert and are kept in
/// host state, so a typo like `samples = 50000` must not be accepted.
const MAX_SAMPLES: u64 = 100;

/// The fields `key` may name, for error messages.
const KEY_FIELDS: &str = "error-code, service-name, severity, source, user-id, metadata.<name>";

/// The host state operations the algorithm needs (a subset of the `state`
/// interface, plus debug logging). Implemented over the imports in the
/// component and by a fake in the tests.
pub trait State {
    /// `state::window-add`.
    fn window_add(
        &mut self,
        key: &str,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> WindowHit;
    /// `state::set-if-absent`.
    fn set_if_absent(&mut self, key: &str, value: &str, ttl_ms: Option<u64>) -> bool;
    /// `state::delete`.
    fn delete(&mut self, key: &str);
    /// `state::list-push`.
    fn list_push(&mut self, key: &str, value: &str, max_len: u32, ttl_ms: Option<u64>) -> u32;
    /// `state::list-take`.
    fn list_take(&mut self, key: &str) -> Vec<String>;
    /// Log at debug level.
    fn debug(&mut self, message: &str);
}

/// An event field that can be part of the aggregation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    ErrorCode,
    ServiceName,
    Severity,
    Source,
    UserId,
    /// A producer metadata entry, by name (`metadata.<name>`).
    Metadata(String),
}

impl Field {
    /// Parse a `key` entry; `snake_case` spellings are accepted too.
    fn parse(text: &str) -> Option<Field> {
        if let Some(name) = text.strip_prefix("metadata.") {
            return (!name.is_empty()).then(|| Field::Metadata(name.to_string()));
        }
        Some(match text.replace('_', "-").as_str() {
            "error-code" => Field::ErrorCode,
            "service-name" => Field::ServiceName,
            "severity" => Field::Severity,
            "source" => Field::Source,
            "user-id" => Field::UserId,
            _ => return None,
        })
    }

    /// This field of `event`; empty when the event lacks it, so events
    /// without e.g. a user id still group together.
    fn value<'a>(&self, event: &'a ErrorEvent) -> &'a str {
        match self {
            Field::ErrorCode => &event.error_code,
            Field::ServiceName => &event.service_name,
            Field::Severity => severity_name(event.severity),
            Field::Source => &event.source,
            Field::UserId => event.user_id.as_deref().unwrap_or(""),
            Field::Metadata(name) => event
                .metadata
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str()),
        }
    }
}

/// Which timestamp of an event counts for the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// `received-at`: arrival time, the seed's behaviour; immune to
    /// producers with wrong clocks.
    Received,
    /// `timestamp`: when the producer says the error happened.
    Event,
}

/// A validated `threshold` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Events needed within the window to fire (at least 1).
    pub threshold: u64,
    /// Window length in milliseconds (more than 0).
    pub window_ms: u64,
    /// Fields whose values, joined with `|`, form the key.
    pub key: Vec<Field>,
    /// Maximum sample messages per alert.
    pub samples: u32,
    /// After an alert for a key, suppress further alerts for it this long
    /// (0: never).
    pub quiet_ms: u64,
    pub clock: Clock,
}

impl Config {
    /// Validate the JSON configuration of a binding.
    pub fn parse(json: &str) -> Result<Config, String> {
        tocsin_plugin_sdk::config::read("threshold", json, Config::read)
    }

    /// Read a binding's settings from `t` (unknown keys are refused by the
    /// caller).
    pub fn read(t: &mut Table) -> Result<Config, String> {
        let threshold = t.u64("threshold")?.ok_or_else(|| {
            t.error(
                "threshold",
                "required (how many events within the window make an alert)",
            )
        })?;
        if threshold == 0 {
            return Err(t.error("threshold", "must be at least 1"));
        }
        let window_ms = t
            .duration_ms("window")?
            .ok_or_else(|| t.error("window", "required (e.g. \"15m\")"))?;
        if window_ms == 0 {
            return Err(t.error("window", "must be longer than 0"));
        }
        let key = match t.strings("key")? {
            None => vec![Field::ErrorCode, Field::ServiceName],
            Some(names) if names.is_empty() => {
                return Err(t.error("key", format!("must name at least one of {KEY_FIELDS}")))
            }
            Some(names) => names
                .iter()
                .map(|name| {
                    Field::parse(name).ok_or_else(|| {
                        t.error(
                            "key",
                            format!("unknown field \"{name}\" (allowed: {KEY_FIELDS})"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let samples = t.u64("samples")?.unwrap_or(5);
        if samples > MAX_SAMPLES {
            return Err(t.error("samples", format!("must be at most {MAX_SAMPLES}")));
        }
        let quiet_ms = t.duration_ms("quiet")?.unwrap_or(0);
        let clock = match t.string("clock")?.as_deref() {
            None | Some("received") => Clock::Received,
            Some("event") => Clock::Event,
            Some(other) => {
                return Err(t.error(
                    "clock",
                    format!("unknown clock \"{other}\" (use \"received\" or \"event\")"),
                ))
            }
        };
        Ok(Config {
            threshold,
            window_ms,
            key,
            samples: samples as u32, // at most MAX_SAMPLES
            quiet_ms,
            clock,
        })
    }

    /// The aggregation key of `event`.
    pub fn key_of(&self, event: &ErrorEvent) -> String {
        let mut key = String::new();
        for (i, field) in self.key.iter().enumerate() {
            if i > 0 {
                key.push('|');
            }
            key.push_str(field.value(event));
        }
        key
    }

    /// FxHash of the key's field values (same fields, same hash).
    pub fn key_hash(&self, event: &ErrorEvent) -> u64 {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h: u64 = 0;
        for field in &self.key {
            let bytes = field.value(event).as_bytes();
            let mut chunks = bytes.chunks_exact(8);
            for c in &mut chunks {
                let word = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                h = (h.rotate_left(5) ^ word).wrapping_mul(K);
            }
            for &b in chunks.remainder() {
                h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
            }
            // Field separator, so ("ab", "c") and ("a", "bc") differ.
            h = (h.rotate_left(5) ^ 0xff).wrapping_mul(K);
        }
        h
    }

    /// True when both events have the same key.
    pub fn same_key(&self, a: &ErrorEvent, b: &ErrorEvent) -> bool {
        self.key.iter().all(|f| f.value(a) == f.value(b))
    }

    /// The time of `event` on the configured clock.
    pub fn time_of(&self, event: &ErrorEvent) -> i64 {
        match self.clock {
            Clock::Received => event.received_at,
            Clock::Event => event.timestamp,
        }
    }
}

/// The WIT name of a severity, as used in keys, labels and JSON.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
    }
}

/// Orders severities, worst highest.
fn rank(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 3,
        Severity::High => 2,
        Severity::Medium => 1,
        Severity::Low => 0,
    }
}

/// Count `events` (oldest first) and return the alerts they complete.
pub fn aggregate(
    config: &Config,
    events: &[ErrorEvent],
    state: &mut impl State,
) -> Result<Vec<Alert>, String> {
    let mut alerts = Vec::new();
    for (key, group) in group_by_key(config, events) {
        Group {
            config,
            key: &key,
            events: &group,
        }
        .count(state, &mut alerts)?;
    }
    Ok(alerts)
}

/// Events grouped by key, groups in first-seen order, events in batch order.
///
/// Hash grouping over the key's field values: no key string is built per
/// event (only one per group), and no ordered-map string comparisons,
/// which inside WebAssembly are byte-by-byte and dominated the profile.
fn group_by_key<'a>(
    config: &Config,
    events: &'a [ErrorEvent],
) -> Vec<(String, Vec<&'a ErrorEvent>)> {
    // Open addressing over group indices; sized for the worst case.
    let slots = (events.len() * 2).next_power_of_two().max(16);
    let mut table: Vec<u32> = vec![u32::MAX; slots];
    let mut groups: Vec<(u64, Vec<&ErrorEvent>)> = Vec::new();
    for event in events {
        let hash = config.key_hash(event);
        let mut slot = (hash as usize) & (slots - 1);
        loop {
            match table[slot] {
                u32::MAX => {
                    table[slot] = groups.len() as u32;
                    groups.push((hash, vec![event]));
                    break;
                }
                g => {
                    let (h, members) = &mut groups[g as usize];
                    if *h == hash && config.same_key(members[0], event) {
                        members.push(event);
                        break;
                    }
                    slot = (slot + 1) & (slots - 1);
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(_, members)| (config.key_of(members[0]), members))
        .collect()
}

/// The events of one key in one batch.
struct Group<'a> {
    config: &'a Config,
    key: &'a str,
    events: &'a [&'a ErrorEvent],
}

impl Group<'_> {
    /// Add the group to its window with one `window-add`, keep samples, and
    /// emit one alert per fire.
    ///
    /// The whole group is counted at the time of its last event: one host
    /// call per key per batch instead of one per event. With the events in
    /// window order, event `i` is number `before + i` of its window, so
    /// the events of each fired window and of the new one can be told apart
    /// from `before`, `fires` and `after` alone.
    fn count(&self, state: &mut impl State, alerts: &mut Vec<Alert>) -> Result<(), String> {
        let config = self.config;
        let events = self.events;
        let n = events.len();
        let Some(last) = events.last() else {
            return Ok(());
        };
        let delta = u32::try_from(n).map_err(|_| {
            format!("threshold: {n} events for one key in one batch is more than can be counted")
        })?;
        let hit = state.window_add(
            self.key,
            delta,
            config.time_of(last),
            config.window_ms,
            config.threshold,
        );
        let samples_key = format!("samples|{}", self.key);
        let max_samples = config.samples as usize;
        let before = usize::try_from(hit.before).unwrap_or(usize::MAX);

        if hit.fires == 0 {
            // Still filling the window: push the events that fit among its
            // first `samples`. A fresh window (before == 0) may find the
            // previous window's list still alive (it expires a window
            // after its last push), so clear it first.
            let room = max_samples.saturating_sub(before).min(n);
            if room > 0 {
                if before == 0 {
                    state.delete(&samples_key);
                }
                self.push_samples(state, &samples_key, &events[..room]);
            }
            return Ok(());
        }

        // The first fire closes the window that held `before` events
        // already: it takes the first `threshold - before` of ours. The
        // clamp only guards against an inconsistent host answer.
        let threshold = usize::try_from(config.threshold).unwrap_or(usize::MAX);
        let first_len = threshold.saturating_sub(before).clamp(1, n);
        let slice = &events[..first_len];
        let mut samples = if before > 0 && max_samples > 0 {
            state.list_take(&samples_key)
        } else {
            Vec::new()
        };
        let wanted = max_samples.saturating_sub(samples.len());
        samples.extend(slice.iter().take(wanted).map(|e| e.message.clone()));
        samples.truncate(max_samples);
        let last_seen = config.time_of(slice[first_len - 1]);
        let first_seen = if before > 0 {
            hit.window_start
        } else {
            // The window began with our first event; the host's window
            // start is the time of the whole group (its last event).
            config.time_of(slice[0])
        };
        self.fire(
            state,
            alerts,
            slice,
            first_seen.min(last_seen),
            last_seen,
            samples,
        );

        // Further fires: whole windows of `threshold` events of ours.
        let mut start = first_len;
        for _ in 1..hit.fires {
            if start >= n {
                break;
            }
            let end = start.saturating_add(threshold).min(n);
            let slice = &events[start..end];
            let samples = slice
                .iter()
                .take(max_samples)
                .map(|e| e.message.clone())
                .collect();
            let first_seen = config.time_of(slice[0]);
            let last_seen = config.time_of(slice[slice.len() - 1]);
            self.fire(
                state,
                alerts,
                slice,
                first_seen.min(last_seen),
                last_seen,
                samples,
            );
            start = end;
        }

        // The last `after` events opened the new window.
        let after = usize::try_from(hit.after).unwrap_or(usize::MAX).min(n);
        let rest = &events[(n - after).max(start)..];
        if max_samples > 0 && !rest.is_empty() {
            if before == 0 {
                // Not emptied by list-take above; may hold a dead window's samples.
                state.delete(&samples_key);
            }
            self.push_samples(state, &samples_key, &rest[..rest.len().min(max_samples)]);
        }
        Ok(())
    }

    /// Append the messages of `events` to the window's sample list.
    fn push_samples(&self, state: &mut impl State, samples_key: &str, events: &[&ErrorEvent]) {
        for event in events {
            state.list_push(
                samples_key,
                &event.message,
                self.config.samples,
                Some(self.config.window_ms),
            );
        }
    }

    /// Emit the alert of one fired window whose events of this batch are
    /// `slice` (non-empty), unless the key is in its quiet period.
    fn fire(
        &self,
        state: &mut impl State,
        alerts: &mut Vec<Alert>,
        slice: &[&ErrorEvent],
        first_seen: i64,
        last_seen: i64,
        samples: Vec<String>,
    ) {
        let config = self.config;
        if config.quiet_ms > 0
            && !state.set_if_absent(&format!("quiet|{}", self.key), "1", Some(config.quiet_ms))
        {
            state.debug(&format!(
                "threshold: alert for key {} suppressed (quiet period of {})",
                self.key,
                format_duration(config.quiet_ms)
            ));
            return;
        }
        let Some(last) = slice.last() else {
            return;
        };
        let severity = slice
            .iter()
            .map(|e| e.severity)
            .max_by_key(|s| rank(*s))
            .unwrap_or(last.severity);
        let count = config.threshold;
        let mut labels = vec![
            ("error-code".to_string(), last.error_code.clone()),
            ("service".to_string(), last.service_name.clone()),
            ("severity".to_string(), severity_name(severity).to_string()),
        ];
        if let Some(user) = &last.user_id {
            labels.push(("user-id".to_string(), user.clone()));
        }
        alerts.push(Alert {
            key: self.key.to_string(),
            rule: String::new(),
            count,
            first_seen,
            last_seen,
            severity,
            title: format!("{} x{count} on {}", last.error_code, last.service_name),
            summary: format!(
                "{count} {} errors from {} within {}: {}",
                last.error_code,
                last.service_name,
                format_duration(config.window_ms),
                last.message
            ),
            samples,
            labels,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's state semantics ([`tocsin_state_ops::Memory`], the
    /// same functions the host's backends run), counting the calls the
    /// cost model promises. Its clock stays at 0, so no TTL elapses unless
    /// a test moves it.
    #[derive(Default)]
    struct Fake {
        state: tocsin_state_ops::Memory,
        window_adds: usize,
        list_pushes: usize,
        logs: Vec<String>,
    }

    impl Fake {
        /// The list under `key` (empty if none).
        fn list(&self, key: &str) -> Vec<String> {
            match self.state.peek(key) {
                Some(tocsin_state_ops::Entry {
                    value: tocsin_state_ops::Value::List(items),
                    ..
                }) => items.clone(),
                _ => Vec::new(),
            }
        }

        /// The count of the window counter under `key` (0 if none: a
        /// counter that fired back to zero is removed).
        fn count(&self, key: &str) -> u64 {
            match self.state.peek(key) {
                Some(tocsin_state_ops::Entry {
                    value: tocsin_state_ops::Value::Counter { count, .. },
                    ..
                }) => *count,
                _ => 0,
            }
        }
    }

    impl State for Fake {
        fn window_add(
            &mut self,
            key: &str,
            delta: u32,
            now: i64,
            window_ms: u64,
            threshold: u64,
        ) -> WindowHit {
            self.window_adds += 1;
            self.state
                .window_add(key, delta, now, window_ms, threshold)
                .into()
        }

        fn set_if_absent(&mut self, key: &str, value: &str, ttl: Option<u64>) -> bool {
            self.state.set(key, value.to_string(), ttl, true)
        }

        fn delete(&mut self, key: &str) {
            self.state.delete(key);
        }

        fn list_push(&mut self, key: &str, value: &str, max_len: u32, ttl: Option<u64>) -> u32 {
            self.list_pushes += 1;
            self.state.list_push(key, value.to_string(), max_len, ttl)
        }

        fn list_take(&mut self, key: &str) -> Vec<String> {
            self.state.list_take(key)
        }

        fn debug(&mut self, message: &str) {
            self.logs.push(message.to_string());
        }
    }

    fn event(code: &str, service: &str, message: &str, at: i64) -> ErrorEvent {
        ErrorEvent {
            event_id: format!("id-{message}"),
            source: "http".to_string(),
            error_code: code.to_string(),
            severity: Severity::Medium,
            message: message.to_string(),
            service_name: service.to_string(),
            timestamp: at - 5,
            received_at: at,
            user_message: None,
            user_id: None,
            stack_trace: None,
            metadata: Vec::new(),
        }
    }

    fn dev(message: &str, at: i64) -> ErrorEvent {
        event("DEVICE_START_FAILED", "device-service", message, at)
    }

    fn config(json: &str) -> Config {
        Config::parse(json).expect("valid config")
    }

    #[test]
    fn fires_at_exactly_threshold_then_resets() {
        let cfg = config(r#"{"threshold":3,"window":"15m"}"#);
        let mut st = Fake::default();
        let out = aggregate(&cfg, &[dev("a", 1_000), dev("b", 2_000)], &mut st).unwrap();
        assert!(out.is_empty());
        let out = aggregate(&cfg, &[dev("c", 3_000)], &mut st).unwrap();
        assert_eq!(out.len(), 1);
        let alert = &out[0];
        assert_eq!(alert.key, "DEVICE_START_FAILED|device-service");
        assert_eq!(alert.rule, "");
        assert_eq!(alert.count, 3);
        assert_eq!(alert.first_seen, 2_000, "window started by the first add");
        assert_eq!(alert.last_seen, 3_000);
        assert_eq!(alert.samples, ["a", "b", "c"]);
        assert_eq!(alert.title, "DEVICE_START_FAILED x3 on device-service");
        assert_eq!(
            alert.summary,
            "3 DEVICE_START_FAILED errors from device-service within 15m: c"
        );
        assert_eq!(
            alert.labels,
            [
                ("error-code".to_string(), "DEVICE_START_FAILED".to_string()),
                ("service".to_string(), "device-service".to_string()),
                ("severity".to_string(), "medium".to_string()),
            ]
        );
        // Reset: the next event starts a new window and fires nothing.
        let out = aggregate(&cfg, &[dev("d", 4_000)], &mut st).unwrap();
        assert!(out.is_empty());
        assert_eq!(st.list("samples|DEVICE_START_FAILED|device-service"), ["d"]);
        let out = aggregate(&cfg, &[dev("e", 5_000), dev("f", 6_000)], &mut st).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples, ["d", "e", "f"]);
    }

    #[test]
    fn window_expiry_starts_over_with_fresh_samples() {
        let cfg = config(r#"{"threshold":2,"window":"1s"}"#);
        let mut st = Fake::default();
        assert!(aggregate(&cfg, &[dev("old", 0)], &mut st)
            .unwrap()
            .is_empty());
        assert!(aggregate(&cfg, &[dev("new", 5_000)], &mut st)
            .unwrap()
            .is_empty());
        let out = aggregate(&cfg, &[dev("newer", 5_500)], &mut st).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples, ["new", "newer"]);
    }

    #[test]
    fn large_batch_fires_twice_with_one_host_call() {
        let cfg = config(r#"{"threshold":3,"window":"15m"}"#);
        let mut st = Fake::default();
        assert!(aggregate(&cfg, &[dev("p", 500)], &mut st)
            .unwrap()
            .is_empty());
        let mut batch: Vec<ErrorEvent> = (0..7).map(|i| dev(&format!("m{i}"), 1_000 + i)).collect();
        batch[3].severity = Severity::Critical;
        st.window_adds = 0;
        let out = aggregate(&cfg, &batch, &mut st).unwrap();
        assert_eq!(st.window_adds, 1);
        // 1 + 7 = 8 events: windows [p m0 m1], [m2 m3 m4], then m5 m6 remain.
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].samples, ["p", "m0", "m1"]);
        assert_eq!((out[0].first_seen, out[0].last_seen), (500, 1_001));
        assert_eq!(out[0].severity, Severity::Medium);
        assert_eq!(out[1].samples, ["m2", "m3", "m4"]);
        assert_eq!((out[1].first_seen, out[1].last_seen), (1_002, 1_004));
        assert_eq!(out[1].severity, Severity::Critical);
        assert_eq!(out[1].title, "DEVICE_START_FAILED x3 on device-service");
        assert_eq!(
            st.list("samples|DEVICE_START_FAILED|device-service"),
            ["m5", "m6"]
        );
        let out = aggregate(&cfg, &[dev("m7", 2_000)], &mut st).unwrap();
        assert_eq!(out[0].samples, ["m5", "m6", "m7"]);
    }

    #[test]
    fn samples_are_truncated() {
        let cfg = config(r#"{"threshold":4,"window":"1h","samples":2}"#);
        let mut st = Fake::default();
        let out = aggregate(&cfg, &[dev("a", 1), dev("b", 2), dev("c", 3)], &mut st).unwrap();
        assert!(out.is_empty());
        assert_eq!(st.list_pushes, 2, "only the first `samples` are pushed");
        let out = aggregate(&cfg, &[dev("d", 4)], &mut st).unwrap();
        assert_eq!(out[0].samples, ["a", "b"]);
        // A batch that fires on its own is truncated too.
        let batch: Vec<_> = (0..9).map(|i| dev(&format!("x{i}"), 10 + i)).collect();
        let out = aggregate(&cfg, &batch, &mut st).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].samples, ["x0", "x1"]);
        assert_eq!(out[1].samples, ["x4", "x5"]);
        assert_eq!(
            st.list("samples|DEVICE_START_FAILED|device-service"),
            ["x8"]
        );
        // No samples at all.
        let cfg = config(r#"{"threshold":1,"window":"1h","samples":0}"#);
        let mut st = Fake::default();
        let out = aggregate(&cfg, &[dev("a", 1)], &mut st).unwrap();
        assert!(out[0].samples.is_empty());
        assert_eq!(st.list_pushes, 0);
    }

    #[test]
    fn key_fields_are_selectable() {
        let cfg = config(
            r#"{"threshold":2,"window":"1h","key":["severity","metadata.region","user_id"]}"#,
        );
        let mut a = dev("a", 1);
        a.metadata = vec![("region".into(), "eu".into())];
        let mut b = event("OTHER", "billing", "b", 2);
        b.metadata = vec![("zone".into(), "z".into()), ("region".into(), "eu".into())];
        let mut c = dev("c", 3);
        c.user_id = Some("u1".into());
        let mut st = Fake::default();
        let out = aggregate(&cfg, &[a, c, b], &mut st).unwrap();
        assert_eq!(st.window_adds, 2, "one call per distinct key");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, "medium|eu|");
        assert_eq!(out[0].samples, ["a", "b"]);
        assert_eq!(out[0].title, "OTHER x2 on billing");
        assert_eq!(st.count("medium||u1"), 1, "c counted under its own key");
    }

    #[test]
    fn event_clock_and_user_label() {
        let cfg = config(r#"{"threshold":1,"window":"1m","clock":"event"}"#);
        let mut e = dev("a", 1_000);
        e.user_id = Some("u7".into());
        e.severity = Severity::High;
        let out = aggregate(&cfg, &[e], &mut Fake::default()).unwrap();
        assert_eq!((out[0].first_seen, out[0].last_seen), (995, 995));
        assert_eq!(out[0].severity, Severity::High);
        assert_eq!(out[0].labels[3], ("user-id".to_string(), "u7".to_string()));
    }

    #[test]
    fn quiet_period_suppresses_but_still_resets() {
        let cfg = config(r#"{"threshold":1,"window":"1m","quiet":"1h"}"#);
        let mut st = Fake::default();
        let out = aggregate(&cfg, &[dev("a", 1), dev("b", 2)], &mut st).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples, ["a"]);
        assert_eq!(st.logs.len(), 1);
        assert!(st.logs[0].contains("suppressed"));
        assert_eq!(st.count("DEVICE_START_FAILED|device-service"), 0);
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |json: &str| Config::parse(json).unwrap_err();
        assert_eq!(
            err(r#"{"threshold":3,"window":"15x"}"#),
            r#"threshold: "window": invalid duration "15x" (use e.g. 500ms, 30s, 15m, 2h, 1d)"#
        );
        assert!(err(r#"{"window":"1m"}"#).starts_with(r#"threshold: "threshold": required"#));
        assert_eq!(
            err(r#"{"threshold":0,"window":"1m"}"#),
            r#"threshold: "threshold": must be at least 1"#
        );
        assert!(err(r#"{"threshold":1,"window":"1m","windw":1}"#)
            .starts_with(r#"threshold: unknown key "windw""#));
        assert!(err(r#"{"threshold":1,"window":"1m","key":["host"]}"#)
            .contains(r#"unknown field "host""#));
        assert!(err(r#"{"threshold":1,"window":"1m","clock":"wall"}"#).contains("\"clock\""));
        let cfg = config(r#"{"threshold":2,"window":60000,"quiet":"30s"}"#);
        assert_eq!(
            (cfg.window_ms, cfg.quiet_ms, cfg.samples),
            (60_000, 30_000, 5)
        );
    }
}
