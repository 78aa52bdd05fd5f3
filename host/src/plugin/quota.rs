//! Caps on what a plugin makes the *host* hold.
//!
//! The CPU deadline and the linear-memory cap bound what a plugin uses of
//! its own sandbox; these bound what it hands the host to keep: state keys
//! and bytes, alerts, deliveries, log lines and error strings. Without them
//! one call could make the host hold hundreds of megabytes (an 8 MB alert
//! title, 100,000 state keys) and slow every other rule.
//!
//! A call that goes over a cap fails as [`super::CallError::Quota`]: counted
//! in `tocsin_plugin_errors_total{kind="quota"}` and shown in `/v1/rules`.
//! Its state writes are undone when the batch runs through a Redis
//! transaction; on direct state (the embedded store) what it wrote before
//! the refusal stays, as after any trap, bounded by the per-call quotas and
//! the rule's own caps. Log lines over the
//! rate are dropped instead (a chatty plugin is not a broken one) and
//! counted in `tocsin_plugin_log_lines_dropped_total`.

use std::time::Instant;

use super::bindings::Alert;
pub use crate::config::Quotas;

impl Quotas {
    /// Checks the alerts an `aggregate` call returned; the first one over
    /// a cap names the call's failure.
    pub fn check_alerts(&self, alerts: &[Alert]) -> Result<(), String> {
        if alerts.len() > self.alerts_per_call {
            return Err(format!(
                "returned {} alerts, over the quota of {} per call ([sandbox.quotas] alerts_per_call)",
                alerts.len(),
                self.alerts_per_call
            ));
        }
        let cap = self.alert_kb.saturating_mul(1024);
        for (i, a) in alerts.iter().enumerate() {
            let size = alert_size(a);
            if size > cap {
                return Err(format!(
                    "alert {i} (key {:?}) is {size} bytes, over the quota of {} KiB per alert ([sandbox.quotas] alert_kb)",
                    cut(&a.key, 80),
                    self.alert_kb
                ));
            }
        }
        Ok(())
    }
}

/// Bytes of text one alert carries.
fn alert_size(a: &Alert) -> usize {
    a.key.len()
        + a.rule.len()
        + a.title.len()
        + a.summary.len()
        + a.samples.iter().map(String::len).sum::<usize>()
        + a.labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// `text` cut to at most `max` bytes on a character boundary, with `…`
/// when something was cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// What the call in progress has used of its per-call quotas.
#[derive(Debug, Default)]
pub struct CallUsage {
    pub state_writes: u32,
    pub state_bytes: usize,
    /// What the rule held when the call first wrote: read once per call
    /// (not per write, which would take the store's lock twice), the
    /// call's own writes added to it.
    pub rule_held: Option<crate::state::RuleUsage>,
    /// The first quota the call went over: it fails with this, even if the
    /// guest carried on and returned normally.
    pub exceeded: Option<String>,
}

/// A token bucket of log lines per instance: `rate` per second, bursts of
/// `rate`. Dropped lines are summarised at most once a second.
#[derive(Debug)]
pub struct LogBucket {
    tokens: f64,
    last: Instant,
    /// Lines dropped since the last summary, and when it was written.
    pub dropped: u64,
    pub last_summary: Instant,
}

impl LogBucket {
    /// A full bucket.
    pub fn new(rate: u32) -> Self {
        Self {
            tokens: f64::from(rate),
            last: Instant::now(),
            dropped: 0,
            last_summary: Instant::now(),
        }
    }

    /// Takes one line's token; false when the line must be dropped.
    pub fn take(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let rate = f64::from(rate);
        let refill = now.duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// The lines dropped since the last summary, if a summary is due.
    pub fn summary_due(&mut self) -> Option<u64> {
        if self.dropped == 0 || self.last_summary.elapsed().as_secs() < 1 {
            return None;
        }
        self.last_summary = Instant::now();
        Some(std::mem::take(&mut self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_char_boundaries_and_says_how_long() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(10);
        let c = cut(&long, 5);
        assert!(c.starts_with("éé…"), "{c}");
        assert!(c.ends_with("(20 bytes in all)"), "{c}");
    }

    #[test]
    fn the_log_bucket_drops_past_its_burst() {
        let mut b = LogBucket::new(10);
        let kept = (0..50).filter(|_| b.take(10)).count();
        assert!((10..=11).contains(&kept), "kept {kept}");
        assert!(b.dropped >= 39);
    }

    #[test]
    fn alerts_over_a_cap_are_named() {
        let q = Quotas {
            alert_kb: 1,
            alerts_per_call: 2,
            ..Quotas::default()
        };
        let alert = |title: String| Alert {
            key: "K".into(),
            rule: String::new(),
            count: 1,
            first_seen: 0,
            last_seen: 0,
            severity: super::super::bindings::WitSeverity::High,
            title,
            summary: String::new(),
            samples: vec![],
            labels: vec![],
        };
        assert!(q.check_alerts(&[alert("ok".into())]).is_ok());
        let e = q
            .check_alerts(&[alert("ok".into()), alert("x".repeat(2000))])
            .expect_err("too big");
        assert!(e.contains("alert 1") && e.contains("alert_kb"), "{e}");
        let e = q
            .check_alerts(&[alert("a".into()), alert("b".into()), alert("c".into())])
            .expect_err("too many");
        assert!(
            e.contains("3 alerts") && e.contains("alerts_per_call"),
            "{e}"
        );
    }
}
