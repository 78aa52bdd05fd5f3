//! The one Redis connection type tocsin uses: a [`ConnectionManager`] that
//! tells a slow Redis from an unreachable one.
//!
//! Why: on a busy machine (an incident makes machines busy) Redis answers
//! late, not never. Taking a late answer for an outage sends instances into
//! degraded mode, where each counts alone, which is exactly what a shared
//! backend is there to avoid. So a request waits for its reply as long as
//! the connection is alive, up to `[redis] outage_after_ms` (10 s by
//! default); only a refused or dropped connection, or a reply later than
//! that, is an outage ([`is_outage`]). A reply slower than `[redis]
//! slow_ms` is counted in `tocsin_redis_slow_replies_total` and sets the
//! gauge `tocsin_redis_slow` (cleared by the next fast reply): slow is
//! visible without being mistaken for down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// How long to wait on Redis before calling it an outage, and what counts
/// as slow. From `[redis]`.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// A reply later than this (or a refused/dropped connection) is an outage.
    pub outage_after: Duration,
    /// A reply later than this is counted as slow.
    pub slow: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            outage_after: Duration::from_secs(10),
            slow: Duration::from_millis(250),
        }
    }
}

/// A Redis connection that records slow replies (see the module
/// documentation). Cheap to clone, like the manager it wraps.
#[derive(Clone)]
pub struct Conn {
    inner: ConnectionManager,
    slow_after: Duration,
    slow: Arc<AtomicBool>,
    /// When the slow warning was last logged (at most every [`WARN_EVERY`]).
    warned: Arc<parking_lot::Mutex<Option<Instant>>>,
}

/// The slow-Redis warning is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Conn {
    /// Connects to `url` with `patience`; `what` names the connection in
    /// the error.
    pub async fn open(url: &str, patience: Patience, what: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("[redis] url: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(patience.outage_after))
            .set_response_timeout(Some(patience.outage_after))
            .set_number_of_retries(1);
        let inner = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| format!("connecting to Redis for {what}: {e}"))?;
        Ok(Self {
            inner,
            slow_after: patience.slow,
            slow: Arc::new(AtomicBool::new(false)),
            warned: Arc::new(parking_lot::Mutex::new(None)),
        })
    }

    fn observe(&self, started: Instant) {
        let slow = started.elapsed() > self.slow_after;
        if slow {
            metrics::counter!("tocsin_redis_slow_replies_total").increment(1);
        }
        if self.slow.swap(slow, Ordering::Relaxed) != slow {
            metrics::gauge!("tocsin_redis_slow").set(if slow { 1.0 } else { 0.0 });
            if slow && self.warned.lock().is_none_or(|t| t.elapsed() > WARN_EVERY) {
                *self.warned.lock() = Some(Instant::now());
                tracing::warn!(
                    after_ms = started.elapsed().as_millis() as u64,
                    "Redis is answering slowly; waiting for it (not an outage; \
                     tocsin_redis_slow_replies_total counts them)"
                );
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let started = Instant::now();
            let out = self.inner.req_packed_command(cmd).await;
            self.observe(started);
            out
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let started = Instant::now();
            let out = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.observe(started);
            out
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// Whether `e` means Redis is unreachable (refused, dropped, or no reply
/// within `outage_after`), as opposed to Redis answering with an error.
pub fn is_outage(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}
