//! How long events take from acceptance to durable — the seed's "p95
//! processing time" — over the last 30 to 60 seconds, for the self watch
//! (`TOCSIN_PROCESSING_SLOW`, [`crate::watch`]).
//!
//! Two 30-second windows of log-scale buckets (four per doubling, so a
//! percentile is within 19 % of the truth): recording is one lock and one
//! add per event, at the point a batch is durable; [`p95`] reads the
//! current window and the one before.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::event::Event;

const BUCKETS: usize = 96;
const WINDOW: Duration = Duration::from_secs(30);

struct Windows {
    started: Instant,
    current: [u64; BUCKETS],
    previous: [u64; BUCKETS],
}

static WINDOWS: LazyLock<Mutex<Windows>> = LazyLock::new(|| {
    Mutex::new(Windows {
        started: Instant::now(),
        current: [0; BUCKETS],
        previous: [0; BUCKETS],
    })
});

fn bucket(ms: u64) -> usize {
    ((((ms + 1) as f64).log2() * 4.0) as usize).min(BUCKETS - 1)
}

fn upper_ms(bucket: usize) -> u64 {
    (2f64.powf((bucket + 1) as f64 / 4.0) - 1.0).ceil() as u64
}

impl Windows {
    fn roll(&mut self) {
        let age = self.started.elapsed();
        if age >= WINDOW {
            self.previous = if age >= WINDOW * 2 {
                [0; BUCKETS]
            } else {
                self.current
            };
            self.current = [0; BUCKETS];
            self.started = Instant::now();
        }
    }
}

/// Records that `events` (errors, not resolutions) are durable at `now`
/// (ms since the epoch).
pub fn record(now: i64, events: &[Event]) {
    let mut w = WINDOWS.lock();
    w.roll();
    for e in events.iter().filter(|e| !e.resolved) {
        w.current[bucket((now - e.received_at).max(0) as u64)] += 1;
    }
}

/// The 95th percentile of the last 30 to 60 seconds, in ms (an upper
/// bound), and how many events it is over; `None` without any.
pub fn p95() -> Option<(u64, u64)> {
    let mut w = WINDOWS.lock();
    w.roll();
    let counts: Vec<u64> = (0..BUCKETS).map(|i| w.current[i] + w.previous[i]).collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = total - total / 20;
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some((upper_ms(i), total));
        }
    }
    Some((upper_ms(BUCKETS - 1), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_a_fifth() {
        for ms in [0u64, 1, 5, 99, 1000, 4321, 60_000, 600_000] {
            let up = upper_ms(bucket(ms));
            assert!(up >= ms, "{ms} ≤ {up}");
            assert!(up as f64 <= (ms as f64 + 1.0) * 1.19 + 1.0, "{ms}: {up}");
        }
    }
}
