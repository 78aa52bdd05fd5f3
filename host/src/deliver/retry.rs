//! Retry policy: exponential backoff with ±25 % jitter, and which failures
//! are worth retrying at all.
//!
//! Seed defaults: base 1 s, ×2 per attempt, capped at 30 s, 3 attempts.
//! Jitter spreads retries of many deliveries that failed together (a
//! receiver outage) so they do not hammer the receiver in lockstep when it
//! comes back.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How one channel retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub attempts: u32,
    /// Delay before the first retry.
    pub base_ms: u64,
    /// Longest delay between attempts.
    pub cap_ms: u64,
}

impl From<&crate::config::DeliveryConfig> for RetryPolicy {
    /// `[delivery] attempts/base_ms/cap_ms`: the policy of channels whose
    /// rule sets none.
    fn from(c: &crate::config::DeliveryConfig) -> Self {
        Self {
            attempts: c.attempts.max(1),
            base_ms: c.base_ms,
            cap_ms: c.cap_ms.max(c.base_ms),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_ms: 1_000,
            cap_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `next` (2 = the first retry), with jitter.
    pub fn delay(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(40);
        let raw = self.base_ms.saturating_mul(1u64 << exp).min(self.cap_ms);
        let jitter = rand::rng().random_range(0.75..=1.25);
        Duration::from_millis((raw as f64 * jitter) as u64)
    }
}

/// Outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth retrying (network error, timeout, 5xx, 408, 429, SMTP 4xx).
    Transient(String),
    /// Retrying cannot help (other 4xx, SMTP 5xx, bad address).
    Permanent(String),
}

/// Classifies an HTTP status as the seed's resilience report does: retry
/// 5xx, 408 and 429, never other 4xx.
pub fn classify_http(status: u16, body: &str) -> Attempt {
    let snippet: String = body.chars().take(200).collect();
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 | 500..=599 => Attempt::Transient(format!("HTTP {status}: {snippet}")),
        _ => Attempt::Permanent(format!("HTTP {status}: {snippet}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_two_with_jitter_and_cap() {
        let p = RetryPolicy::default();
        for _ in 0..200 {
            let d1 = p.delay(2).as_millis();
            let d2 = p.delay(3).as_millis();
            let d9 = p.delay(9).as_millis();
            assert!((750..=1250).contains(&d1), "{d1}");
            assert!((1500..=2500).contains(&d2), "{d2}");
            assert!(
                (22_500..=37_500).contains(&d9),
                "capped at 30 s ± 25 %: {d9}"
            );
        }
    }

    #[test]
    fn http_statuses_are_classified_like_the_seed() {
        assert_eq!(classify_http(204, ""), Attempt::Delivered);
        assert!(matches!(classify_http(500, ""), Attempt::Transient(_)));
        assert!(matches!(classify_http(429, ""), Attempt::Transient(_)));
        assert!(matches!(classify_http(408, ""), Attempt::Transient(_)));
        assert!(matches!(classify_http(404, ""), Attempt::Permanent(_)));
        assert!(matches!(classify_http(400, ""), Attempt::Permanent(_)));
    }
}
