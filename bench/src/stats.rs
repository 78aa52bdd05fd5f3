//! Percentiles of latency samples and min / median / max of runs.

use serde::{Deserialize, Serialize};

/// The `p`-th percentile (0..=100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A latency distribution, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Summarises nanosecond samples.
    pub fn from_ns(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            count: samples.len(),
            p50_us: us(percentile(&samples, 50.0)),
            p90_us: us(percentile(&samples, 90.0)),
            p99_us: us(percentile(&samples, 99.0)),
            max_us: us(samples.last().copied().unwrap_or(0)),
        }
    }
}

/// Min, median and max of several runs' values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// `None` when there are no values.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            min: v[0],
            median,
            max: v[n - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
    }

    #[test]
    fn spread_of_even_count() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 10.0]).expect("values");
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 10.0));
    }
}
