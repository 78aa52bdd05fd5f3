//! The recovery loop (seed 001's "死信队列处理" worker): every
//! `[amqp] recovery_every_secs`, the dead letters a plugin failure put
//! there are replayed ([`super::dlq`]) once what failed them is gone, at
//! most `recovery_per_sec` a second.
//!
//! A letter is replayed when it is a `processing-failed` one, younger
//! than `recovery_max_age_secs`, replayed fewer than
//! `recovery_max_replays` times, and every rule that failed on it is
//! loaded again and either runs another version (its rule file or plugin
//! changed) or has not failed for `recovery_quiet_secs`. A malformed body
//! stays a malformed body: only a replay by hand (`tocsin dlq replay`)
//! sends one again. Replays that fail again come back to the dead letters
//! with their count, so a letter that keeps failing stops at the limit.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::dead::{DeadLetter, FAILED};
use super::dlq::DeadLetters;
use super::AmqpStatus;
use crate::catalog::Generation;
use crate::config::AmqpConfig;
use crate::pipeline::PipelineHandle;

/// Who the loop says recovered a letter (`x-tocsin-recovered-by`).
pub const BY: &str = "recovery";

/// The loop's settings, from `[amqp]`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub every: Duration,
    pub max_age_ms: u64,
    pub per_sec: u32,
    pub max_replays: u64,
    pub quiet_ms: i64,
}

impl From<&AmqpConfig> for Settings {
    fn from(c: &AmqpConfig) -> Self {
        Self {
            every: Duration::from_secs(c.recovery_every_secs.max(1)),
            max_age_ms: c.recovery_max_age_secs.saturating_mul(1000),
            per_sec: c.recovery_per_sec.max(1),
            max_replays: u64::from(c.recovery_max_replays),
            quiet_ms: i64::try_from(c.recovery_quiet_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }
}

/// Starts the loop; it ends when the pipeline closes.
pub fn spawn(
    dead: Arc<DeadLetters>,
    settings: Settings,
    generation: Arc<ArcSwap<Generation>>,
    status: Arc<AmqpStatus>,
    pipeline: PipelineHandle,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(settings.every) => {}
                _ = pipeline.closing() => return,
            }
            // Nothing to do, or no broker to do it with: no connection.
            if !status.connected() || status.backlog.read().dead == Some(0) {
                continue;
            }
            let g = generation.load_full();
            let closing = pipeline.clone();
            let pick = |l: &DeadLetter| {
                !closing.is_closed() && due(l, &g, &settings, crate::event::now_ms())
            };
            let result = dead.replay(&pick, BY, Some(settings.per_sec)).await;
            metrics::counter!("tocsin_amqp_recovery_passes_total").increment(1);
            match result {
                Ok(r) if !r.replayed.is_empty() => {
                    tracing::info!(
                        replayed = r.replayed.len(),
                        kept = r.kept,
                        "recovery replayed dead letters"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recovery could not read the dead letters"),
            }
        }
    });
}

/// Whether the loop replays `l` now, with `g` loaded.
pub fn due(l: &DeadLetter, g: &Generation, s: &Settings, now: i64) -> bool {
    l.reason == FAILED
        && l.age_ms.is_some_and(|a| a <= s.max_age_ms)
        && l.replays < s.max_replays
        && !l.versions.is_empty()
        && l.versions.iter().all(|(name, failed_version)| {
            let Some(rule) = g.rules.iter().find(|r| *r.name == **name) else {
                return false;
            };
            let last_failure = crate::pipeline::observe::failures(name)
                .and_then(|f| f.last_error_at)
                .unwrap_or(0);
            rule.enabled && (rule.version() != *failed_version || now - last_failure >= s.quiet_ms)
        })
}
