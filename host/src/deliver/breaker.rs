//! Circuit breakers, one per delivery target (a webhook host, the SMTP
//! server).
//!
//! Seed defaults: over a 10 s rolling window with at least 10 calls, 50 %
//! errors open the breaker; after 30 s one probe is let through (half-open);
//! its success closes the breaker, its failure opens it again. While open,
//! deliveries wait (without spending attempts) instead of hammering a dead
//! receiver.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// Breaker tuning.
#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    pub window: Duration,
    pub min_calls: usize,
    pub error_ratio: f64,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_calls: 10,
            error_ratio: 0.5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

struct Breaker {
    calls: VecDeque<(Instant, bool)>,
    state: BreakerState,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
    opened_count: u64,
}

/// What the status API shows per target.
#[derive(Clone, Debug, Serialize)]
pub struct BreakerStatus {
    pub target: String,
    pub state: BreakerState,
    pub calls_in_window: usize,
    pub errors_in_window: usize,
    pub times_opened: u64,
    /// Milliseconds until a probe is allowed, when open.
    pub retry_in_ms: Option<u64>,
}

/// All breakers, keyed by target.
pub struct Breakers {
    config: BreakerConfig,
    map: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// May a call to `target` go out now? `Err(wait)` says how long until
    /// it may.
    pub fn allow(&self, target: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.map.lock();
        let b = map.entry(target.to_string()).or_insert_with(|| Breaker {
            calls: VecDeque::new(),
            state: BreakerState::Closed,
            opened_at: None,
            probe_in_flight: false,
            opened_count: 0,
        });
        match b.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let since = b
                    .opened_at
                    .map(|t| now.duration_since(t))
                    .unwrap_or_default();
                if since >= self.config.open_for {
                    b.state = BreakerState::HalfOpen;
                    b.probe_in_flight = true;
                    Ok(())
                } else {
                    Err(self.config.open_for - since)
                }
            }
            BreakerState::HalfOpen => {
                if b.probe_in_flight {
                    Err(Duration::from_millis(500))
                } else {
                    b.probe_in_flight = true;
                    Ok(())
                }
            }
        }
    }

    /// Records the outcome of a call that [`Self::allow`] let through.
    pub fn record(&self, target: &str, ok: bool) {
        let now = Instant::now();
        let mut map = self.map.lock();
        let Some(b) = map.get_mut(target) else { return };
        b.calls.push_back((now, ok));
        while b
            .calls
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.config.window)
        {
            b.calls.pop_front();
        }
        match b.state {
            BreakerState::HalfOpen => {
                b.probe_in_flight = false;
                if ok {
                    b.state = BreakerState::Closed;
                    b.calls.clear();
                } else {
                    b.state = BreakerState::Open;
                    b.opened_at = Some(now);
                    b.opened_count += 1;
                }
            }
            BreakerState::Closed => {
                let errors = b.calls.iter().filter(|(_, ok)| !ok).count();
                let total = b.calls.len();
                if total >= self.config.min_calls
                    && errors as f64 / total as f64 >= self.config.error_ratio
                {
                    tracing::warn!(target, errors, total, "circuit breaker opened");
                    metrics::counter!("tocsin_breaker_opened_total", "target" => target.to_string()).increment(1);
                    b.state = BreakerState::Open;
                    b.opened_at = Some(now);
                    b.opened_count += 1;
                }
            }
            BreakerState::Open => {}
        }
    }

    /// State of every known target.
    pub fn status(&self) -> Vec<BreakerStatus> {
        let now = Instant::now();
        let map = self.map.lock();
        let mut out: Vec<BreakerStatus> = map
            .iter()
            .map(|(target, b)| {
                let live: Vec<&(Instant, bool)> = b
                    .calls
                    .iter()
                    .filter(|(t, _)| now.duration_since(*t) <= self.config.window)
                    .collect();
                BreakerStatus {
                    target: target.clone(),
                    state: b.state,
                    calls_in_window: live.len(),
                    errors_in_window: live.iter().filter(|(_, ok)| !ok).count(),
                    times_opened: b.opened_count,
                    retry_in_ms: match (b.state, b.opened_at) {
                        (BreakerState::Open, Some(t)) => Some(
                            self.config
                                .open_for
                                .saturating_sub(now.duration_since(t))
                                .as_millis() as u64,
                        ),
                        _ => None,
                    },
                }
            })
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            min_calls: 4,
            error_ratio: 0.5,
            open_for: Duration::from_millis(50),
        }
    }

    #[test]
    fn opens_at_half_errors_then_probes_once() {
        let b = Breakers::new(quick());
        for ok in [true, false, true, false] {
            assert!(b.allow("t").is_ok());
            b.record("t", ok);
        }
        assert!(b.allow("t").is_err(), "open after 2/4 errors");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow("t").is_ok(), "half-open probe");
        assert!(b.allow("t").is_err(), "only one probe at a time");
        b.record("t", true);
        assert!(b.allow("t").is_ok(), "closed after a good probe");
        assert_eq!(b.status()[0].times_opened, 1);
    }

    #[test]
    fn too_few_calls_never_open() {
        let b = Breakers::new(quick());
        for _ in 0..3 {
            assert!(b.allow("t").is_ok());
            b.record("t", false);
        }
        assert!(b.allow("t").is_ok());
    }
}
