//! `{{name}}`: an aggregator. It alerts once `threshold` events with the
//! same error code and service arrive within `window`, using the host's
//! windowed counter, so counts survive swaps, traps and restarts.
//!
//! Configured per rule (the rule's `[aggregate] config` table arrives here,
//! once per rule that uses the plugin):
//!
//! ```toml
//! [aggregate]
//! plugin = "{{name}}"
//! config = { threshold = 3, window = "1m" }
//! ```

use tocsin_plugin_sdk::aggregator::{Aggregator, Alert, ErrorEvent};
use tocsin_plugin_sdk::{log, state, Table};

/// One rule's settings.
#[derive(Debug, PartialEq)]
struct Counter {
    threshold: u64,
    window_ms: u64,
}

impl Aggregator for Counter {
    const NAME: &'static str = "{{name}}";

    /// Reads a rule's settings; the SDK refuses keys not read here.
    fn configure(config: &mut Table) -> Result<Self, String> {
        let threshold = config.u64("threshold")?.unwrap_or(3);
        if threshold == 0 {
            return Err(config.error("threshold", "must be at least 1"));
        }
        let window_ms = config.duration_ms("window")?.unwrap_or(60_000);
        Ok(Counter {
            threshold,
            window_ms,
        })
    }

    fn aggregate(&self, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
        let mut alerts = Vec::new();
        for e in &events {
            let key = format!("{}|{}", e.error_code, e.service_name);
            let hit = state::window_add(&key, 1, e.received_at, self.window_ms, self.threshold);
            if hit.fires > 0 {
                log::info(&format!("{key} reached {}", self.threshold));
                let mut alert = Alert::new(
                    &key,
                    self.threshold,
                    e.severity,
                    &format!("{} on {}", e.error_code, e.service_name),
                );
                alert.first_seen = hit.window_start;
                alert.last_seen = e.received_at;
                alert.summary = format!(
                    "{} events within {} s: {}",
                    self.threshold,
                    self.window_ms / 1000,
                    e.message
                );
                alert.samples = vec![e.message.clone()];
                alert.labels = vec![
                    ("error-code".into(), e.error_code.clone()),
                    ("service".into(), e.service_name.clone()),
                ];
                alerts.push(alert);
            }
        }
        Ok(alerts)
    }
}

tocsin_plugin_sdk::export_aggregator!(Counter);

// Native unit tests (`cargo test`): the SDK's `testing` stands in for the
// host, with the engine's own state semantics.
#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::testing;

    #[test]
    fn config_defaults_and_errors() {
        let c = Counter::from_json("{}").unwrap();
        assert_eq!(c, Counter { threshold: 3, window_ms: 60_000 });
        assert_eq!(Counter::from_json(r#"{"window": "5m"}"#).unwrap().window_ms, 300_000);
        let e = Counter::from_json(r#"{"threshold": 0}"#).unwrap_err();
        assert!(e.contains("threshold"), "{e}");
        let e = Counter::from_json(r#"{"treshold": 2}"#).unwrap_err();
        assert!(e.contains("unknown key"), "{e}");
    }

    #[test]
    fn alerts_on_the_threshold_th_event_within_the_window() {
        testing::reset();
        let c = Counter::from_json(r#"{"threshold": 2, "window": "1m"}"#).unwrap();
        let a = testing::event("E1", "svc", 1_000);
        let b = testing::event("E1", "svc", 2_000);
        let other = testing::event("E2", "svc", 2_500);
        assert!(c.aggregate(vec![a]).unwrap().is_empty());
        let alerts = c.aggregate(vec![b, other]).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].key, "E1|svc");
        assert_eq!(alerts[0].count, 2);
        assert_eq!(testing::logs().len(), 1);
    }
}
