//! How far behind the RabbitMQ consumer is, and a way to pause it.
//!
//! While a session is connected, [`probe`] asks the broker every
//! [`PROBE_EVERY`] how many messages wait in the queue and in its dead
//! letters (a passive `queue.declare`: it changes nothing), and the
//! consumer notes when it last took a delivery and how old the events of
//! its last batch were. [`crate::watch`] reads that as [`Backlog`] to
//! raise `TOCSIN_AMQP_BACKLOG` and `TOCSIN_AMQP_LAG`.
//!
//! Pausing (`POST /v1/amqp/pause`, for broker maintenance or to hold
//! intake while a plugin is fixed) stops taking deliveries: what the
//! broker already pushed (at most `prefetch`) waits unacknowledged in the
//! client, the rest stays ready in the queue, and nothing is lost.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use serde::Serialize;

use crate::event::now_ms;

/// How often a connected session asks the broker for the queue depths.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What is known of the consumer's lag. Shared by the session (writes)
/// and the watch and `/readyz` (read).
#[derive(Default)]
pub struct BacklogCell {
    /// Messages ready in the queue at the last probe (-1: not known).
    ready: AtomicI64,
    /// Messages in the dead-letter queue at the last probe (-1: unknown).
    dead: AtomicI64,
    /// When a delivery was last taken (ms since the epoch; 0: never).
    consumed_at: AtomicI64,
    /// The oldest event's age in the last batch taken, in ms (its
    /// producer's timestamp against the time it was taken).
    batch_age_ms: AtomicU64,
    paused: AtomicBool,
    resumed: tokio::sync::Notify,
}

/// A reading of [`BacklogCell`].
#[derive(Clone, Debug, Serialize)]
pub struct Backlog {
    pub ready: Option<u64>,
    pub dead: Option<u64>,
    /// How far behind the consumer is while messages wait (0 when none
    /// do): the time since it last took a delivery, or the age of the
    /// events it takes, whichever is longer (ms).
    pub lag_ms: u64,
    pub paused: bool,
}

impl BacklogCell {
    /// A cell that knows nothing yet.
    pub fn new() -> Arc<Self> {
        let cell = Self::default();
        cell.ready.store(-1, Ordering::Relaxed);
        cell.dead.store(-1, Ordering::Relaxed);
        Arc::new(cell)
    }

    /// The consumer took a batch of deliveries whose oldest event the
    /// producer stamped at `oldest` (ms since the epoch; 0: no stamp).
    pub fn consumed(&self, oldest: i64) {
        let now = now_ms();
        self.consumed_at.store(now, Ordering::Relaxed);
        let age = if oldest > 0 { (now - oldest).max(0) } else { 0 };
        self.batch_age_ms.store(age as u64, Ordering::Relaxed);
    }

    /// The current reading.
    pub fn read(&self) -> Backlog {
        let known = |v: i64| u64::try_from(v).ok();
        let ready = known(self.ready.load(Ordering::Relaxed));
        let consumed_at = self.consumed_at.load(Ordering::Relaxed);
        // Nothing waiting: caught up, whatever the age of what it took.
        let lag_ms = match ready {
            // Waiting messages: behind by the time since it last took a
            // delivery (or since they were first seen waiting), or by the
            // age of the events it takes, whichever is longer.
            Some(n) if n > 0 && consumed_at > 0 => ((now_ms() - consumed_at).max(0) as u64)
                .max(self.batch_age_ms.load(Ordering::Relaxed)),
            _ => 0,
        };
        Backlog {
            ready,
            dead: known(self.dead.load(Ordering::Relaxed)),
            lag_ms,
            paused: self.paused.load(Ordering::Relaxed),
        }
    }

    /// Pauses (`true`) or resumes taking deliveries.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        if !paused {
            self.resumed.notify_waiters();
        }
        metrics::gauge!("tocsin_amqp_paused").set(if paused { 1.0 } else { 0.0 });
    }

    /// Resolves at once unless paused, else once resumed.
    pub async fn unpaused(&self) {
        loop {
            let resumed = self.resumed.notified();
            if !self.paused.load(Ordering::SeqCst) {
                return;
            }
            resumed.await;
        }
    }
}

/// While the session lives: the depths of `queue` and `dead_queue` into
/// `cell` every [`PROBE_EVERY`]. The consumer's clock starts now, so a
/// queue full at connect counts as lag from the connect on.
pub async fn probe(ch: Channel, queue: String, dead_queue: String, cell: Arc<BacklogCell>) {
    if cell.consumed_at.load(Ordering::Relaxed) == 0 {
        cell.consumed_at.store(now_ms(), Ordering::Relaxed);
    }
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let mut tick = tokio::time::interval(PROBE_EVERY);
    loop {
        tick.tick().await;
        for (name, slot, gauge) in [
            (&queue, &cell.ready, "tocsin_amqp_queue_ready"),
            (&dead_queue, &cell.dead, "tocsin_amqp_dead_ready"),
        ] {
            match ch
                .queue_declare(name.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(q) => {
                    let n = i64::from(q.message_count());
                    // Messages appear while the consumer had nothing to
                    // take: the lag starts now, not at its last delivery.
                    if std::ptr::eq(slot, &cell.ready) && slot.load(Ordering::Relaxed) <= 0 && n > 0
                    {
                        cell.consumed_at.store(now_ms(), Ordering::Relaxed);
                    }
                    slot.store(n, Ordering::Relaxed);
                    metrics::gauge!(gauge).set(n as f64);
                }
                // The channel is gone: the session is ending.
                Err(_) => return,
            }
        }
    }
}
