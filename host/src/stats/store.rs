//! Where the buckets live: the engine's state backend, so they outlive a
//! restart and, on Redis, every instance adds into the same buckets and
//! every instance's dashboard shows the whole cluster. Host keys under
//! `\u{1e}stats\u{1f}` (no rule's, so no plugin can read or purge them),
//! expiring on their own: minutes after [`MINUTES_KEPT_MS`], hours after
//! [`HOURS_KEPT_MS`].

use std::sync::Arc;

use super::bucket::Bucket;
use crate::state::{EmbeddedState, RedisState, StateStore};

/// One minute, in ms: the fine resolution.
pub const MINUTE_MS: i64 = 60_000;
/// One hour, in ms: the coarse resolution.
pub const HOUR_MS: i64 = 3_600_000;
/// How long minute buckets are kept: a day and an hour.
pub const MINUTES_KEPT_MS: i64 = 25 * HOUR_MS;
/// How long hour buckets are kept: eight days.
pub const HOURS_KEPT_MS: i64 = 8 * 24 * HOUR_MS;

/// A bucket's resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Minute,
    Hour,
}

impl Step {
    /// Its length in ms.
    pub fn ms(self) -> i64 {
        match self {
            Self::Minute => MINUTE_MS,
            Self::Hour => HOUR_MS,
        }
    }

    /// How long its buckets are kept.
    pub fn kept_ms(self) -> i64 {
        match self {
            Self::Minute => MINUTES_KEPT_MS,
            Self::Hour => HOURS_KEPT_MS,
        }
    }

    /// The start of the bucket holding time `at`.
    pub fn start(self, at: i64) -> i64 {
        at - at.rem_euclid(self.ms())
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Minute => "m",
            Self::Hour => "h",
        }
    }
}

/// The (unprefixed) key of the bucket starting at `start`.
pub fn key(step: Step, start: i64) -> String {
    format!("\u{1e}stats\u{1f}{}\u{1f}{start}", step.tag())
}

/// Adds `bucket` into the stored bucket `(step, start)`.
pub async fn add(
    store: &StateStore,
    step: Step,
    start: i64,
    bucket: &Bucket,
) -> Result<(), String> {
    match store {
        StateStore::Embedded(s) => {
            add_embedded(s, step, start, bucket);
            Ok(())
        }
        StateStore::Redis(r) if r.degraded().is_some() => {
            Err("Redis is unreachable; kept for the next flush".into())
        }
        StateStore::Redis(r) => add_redis(r, step, start, bucket).await,
    }
}

fn add_embedded(s: &EmbeddedState, step: Step, start: i64, bucket: &Bucket) {
    let ttl = u64::try_from(start + step.kept_ms() - crate::event::now_ms()).unwrap_or(1);
    s.apply(&key(step, start), |slot, now| {
        let mut stored = tocsin_state_ops::get(slot.as_ref(), now)
            .map(|t| Bucket::from_json(&t))
            .unwrap_or_default();
        stored.merge(bucket);
        tocsin_state_ops::set(slot, stored.to_json(), Some(ttl.max(1)), false, now);
        ((), true)
    });
}

async fn add_redis(
    r: &Arc<RedisState>,
    step: Step,
    start: i64,
    bucket: &Bucket,
) -> Result<(), String> {
    let hash = r.key(&key(step, start));
    let (counts, last) = bucket.fields();
    let mut pipe = redis::pipe();
    for (field, n) in &counts {
        pipe.hincr(&hash, field, *n).ignore();
    }
    if !last.is_empty() {
        pipe.hset_multiple(&hash, &last).ignore();
    }
    pipe.pexpire_at(&hash, start + step.kept_ms()).ignore();
    let mut conn = r.connection();
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("adding to {hash:?} on Redis: {e}"))
}

/// The stored buckets of `step` starting at `starts` (empty where none).
pub async fn read(store: &StateStore, step: Step, starts: &[i64]) -> Result<Vec<Bucket>, String> {
    match store {
        StateStore::Embedded(s) => Ok(read_embedded(s, step, starts)),
        StateStore::Redis(r) if r.degraded().is_some() => {
            Ok(read_embedded(r.local(), step, starts))
        }
        StateStore::Redis(r) => {
            let mut pipe = redis::pipe();
            for start in starts {
                pipe.hgetall(r.key(&key(step, *start)));
            }
            let mut conn = r.connection();
            let hashes: Vec<std::collections::HashMap<String, String>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("reading the stats buckets on Redis: {e}"))?;
            Ok(hashes
                .iter()
                .map(|h| Bucket::from_fields(h.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
                .collect())
        }
    }
}

fn read_embedded(s: &EmbeddedState, step: Step, starts: &[i64]) -> Vec<Bucket> {
    starts
        .iter()
        .map(|start| {
            s.apply(&key(step, *start), |slot, now| {
                let text = tocsin_state_ops::get(slot.as_ref(), now);
                (
                    text.map(|t| Bucket::from_json(&t)).unwrap_or_default(),
                    false,
                )
            })
        })
        .collect()
}
