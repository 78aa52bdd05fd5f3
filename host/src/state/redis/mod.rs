//! The Redis state backend: several tocsin instances share counters.
//!
//! Pipeline batches reach it through a transaction ([`txn`]): rule
//! locks, one load per key, one atomic commit with the batch's outbox
//! entries. A call outside a batch (an aggregator's `configure`) is a
//! one-key transaction ([`RedisState::update_direct`]).
//! All keys carry `[redis] prefix`, so deployments can share one Redis.
//!
//! Outage behaviour (documented in the README): a slow Redis is waited for
//! ([`super::conn`]); when Redis refuses, drops the connection or does not
//! answer within `[redis] outage_after_ms`, the instance marks itself
//! degraded (`/readyz`, `tocsin_state_degraded`) and keeps processing on
//! local state in its data directory. Each degraded batch also writes a
//! *journal* entry locally: per rule, the events it counted and the alert
//! keys it fired. During the outage each instance counts alone. A
//! background probe notices Redis coming back and reconciles: the journal
//! is replayed onto the shared state through the pipeline (see
//! [`crate::pipeline::replay`]), so the shared counters see every event and
//! every threshold is checked as the events are counted again; a replayed
//! alert is suppressed when the same key already alerted locally during the
//! outage. Then the local copies are dropped.

mod hints;
pub mod txn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use redis::AsyncCommands;

use super::conn::{Conn, Patience};
use super::ops::{Entry, StateOps};
use super::{EmbeddedState, StateError};
pub use txn::{Checkpoint, Txn, TxnError};

/// The Redis hash holding `instance`'s unsettled deliveries (unprefixed):
/// written with each batch's commit ([`Txn::ride`]), read by
/// [`crate::cluster`] for takeovers.
pub fn outbox_key(instance: &str) -> String {
    format!("\u{1e}outbox\u{1f}{instance}")
}

/// The longest TTL tocsin hands Redis (about 2,000 years): plugins may ask
/// for `u64::MAX`, which Redis would refuse as out of range.
pub const MAX_TTL_MS: u64 = 1 << 46;

/// `ttl` clamped to what Redis takes (at least 1 ms).
pub fn redis_ttl(ttl: u64) -> u64 {
    ttl.clamp(1, MAX_TTL_MS)
}

/// Counts one request to Redis (`tocsin_redis_round_trips_total`): the
/// figure the cluster benchmark divides by events.
pub fn round_trip() {
    metrics::counter!("tocsin_redis_round_trips_total").increment(1);
}

/// How a batch on the Redis backend works on state.
pub enum Begun {
    /// Through a transaction on Redis.
    Txn(Box<txn::Txn>),
    /// On local state while Redis is unreachable; the guard keeps
    /// reconciliation waiting until the batch is done.
    Local(Arc<EmbeddedState>, tokio::sync::OwnedRwLockReadGuard<()>),
}

/// Replays journaled degraded batches onto shared state (key, JSON text of
/// each entry); set by the pipeline, which owns the plugins it needs.
pub type Replayer =
    Arc<dyn Fn(Vec<(String, String)>) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// See the module documentation.
pub struct RedisState {
    conn: Conn,
    scripts: txn::Scripts,
    /// Keys to prefetch per rule (see [`txn::Txn::prefetch`]).
    hints: Mutex<hints::Hints>,
    /// This instance's id in the cluster (kept in the data directory, so a
    /// restart finds its own outbox entries again).
    instance: String,
    prefix: String,
    local: Arc<EmbeddedState>,
    degraded: AtomicBool,
    /// Batches running on local state (degraded) hold it shared;
    /// reconciliation takes it exclusively, so no local write is made
    /// after the local state was copied to Redis.
    gate: Arc<tokio::sync::RwLock<()>>,
    last_error: Mutex<Option<String>>,
    replayer: std::sync::OnceLock<Replayer>,
}

impl RedisState {
    /// Connects to `url`; `local_dir` holds the fallback state.
    pub async fn connect(
        url: &str,
        prefix: &str,
        patience: Patience,
        local_dir: &std::path::Path,
    ) -> Result<Arc<Self>, StateError> {
        let conn = Conn::open(url, patience, "state")
            .await
            .map_err(StateError::Redis)?;
        let instance = instance_id(local_dir)?;
        let local = Arc::new(EmbeddedState::open(local_dir)?);
        // A previous run died with journaled batches not yet replayed:
        // start degraded, so reconciliation replays them first.
        let unreplayed = !local.texts_with_prefix(super::JOURNAL_PREFIX).is_empty();
        let me = Arc::new(Self {
            instance,
            conn,
            prefix: prefix.to_string(),
            local,
            degraded: AtomicBool::new(unreplayed),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            last_error: Mutex::new(
                unreplayed.then(|| "replaying batches counted during an earlier outage".into()),
            ),
            replayer: std::sync::OnceLock::new(),
            scripts: txn::Scripts::new(),
            hints: Mutex::new(hints::Hints::default()),
        });
        metrics::gauge!("tocsin_state_degraded").set(if unreplayed { 1.0 } else { 0.0 });
        let probe = me.clone();
        tokio::spawn(async move { probe.recover_loop().await });
        Ok(me)
    }

    /// This instance's id in the cluster.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Sets who replays journaled degraded batches (the pipeline).
    pub fn set_replayer(&self, replayer: Replayer) {
        let _ = self.replayer.set(replayer);
    }

    /// A transaction on shared state even while degraded: for the replay,
    /// which runs while reconciliation holds every degraded batch off.
    pub async fn begin_shared(self: &Arc<Self>, rules: &[&str]) -> Result<txn::Txn, txn::TxnError> {
        txn::Txn::begin(self.clone(), rules).await
    }

    /// A clone of the connection, counted as one round trip.
    pub fn connection(&self) -> Conn {
        round_trip();
        self.conn.clone()
    }

    /// `key` with the deployment's prefix.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Marks the backend degraded because of `error`.
    pub fn fail_with(&self, error: &str) {
        if !self.degraded.swap(true, Ordering::AcqRel) {
            tracing::error!(
                error,
                "Redis unreachable: degraded, counting on local state"
            );
            metrics::gauge!("tocsin_state_degraded").set(1.0);
        }
        *self.last_error.lock() = Some(error.to_string());
    }

    /// Removes `fields` from the hash `hash` (unprefixed); best effort.
    pub async fn forget_fields(&self, hash: &str, fields: &[String]) {
        let mut conn = self.connection();
        if let Err(e) = conn.hdel::<_, _, ()>(self.key(hash), fields).await {
            tracing::warn!(error = %e, "could not remove shared outbox entries");
        }
    }

    /// Starts a batch on `rules`: a transaction (see [`txn`]), or,
    /// while degraded, the local state for the whole batch.
    pub async fn begin(self: &Arc<Self>, rules: &[&str]) -> Result<Begun, txn::TxnError> {
        loop {
            if self.is_degraded() {
                let guard = self.gate.clone().read_owned().await;
                // Reconciliation may have finished while this waited.
                if self.is_degraded() {
                    return Ok(Begun::Local(self.local.clone(), guard));
                }
            }
            match txn::Txn::begin(self.clone(), rules).await {
                Ok(t) => return Ok(Begun::Txn(Box::new(t))),
                Err(txn::TxnError::Redis(e)) => self.fail_with(&e),
                Err(e) => return Err(e),
            }
        }
    }

    fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// The degraded reason, if degraded.
    pub fn degraded(&self) -> Option<String> {
        self.is_degraded().then(|| {
            format!(
                "Redis unavailable ({}): counting on local state",
                self.last_error.lock().clone().unwrap_or_default()
            )
        })
    }

    /// Runs a state operation outside a batch (an aggregator's
    /// `configure`): as a one-key transaction under the key's rule lock,
    /// so it is atomic with the batches of every instance; on local state
    /// while degraded, or when the transaction fails.
    pub async fn update_direct<R: Send>(
        self: &Arc<Self>,
        key: &str,
        op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool) + Send,
    ) -> R {
        if self.is_degraded() {
            return self.local.apply(key, op);
        }
        let rules: Vec<&str> = super::rule_of(key).into_iter().collect();
        let txn = match txn::Txn::begin(self.clone(), &rules).await {
            Ok(txn) => txn,
            Err(e) => {
                tracing::warn!(error = %e, "state call outside a batch: on local state");
                return self.local.apply(key, op);
            }
        };
        let out = txn.update(key, op).await;
        if let Err(e) = txn.commit().await {
            tracing::warn!(error = %e, "state call outside a batch was not committed");
        }
        out
    }

    /// Changes are recorded once Redis answered; local ones need a sync.
    pub async fn sync(&self) -> Result<(), StateError> {
        self.local.sync().await
    }

    /// Keys in the Redis database (approximate: the whole database).
    #[allow(clippy::len_without_is_empty)]
    pub async fn len(&self) -> usize {
        let mut conn = self.conn.clone();
        round_trip();
        redis::cmd("DBSIZE")
            .query_async::<usize>(&mut conn)
            .await
            .unwrap_or(0)
            + self.local.len()
    }

    /// Every text value on Redis whose (unprefixed) key starts with
    /// `prefix`: a `SCAN` over the prefix, then one `MGET` per page. For
    /// the admin views (active alerts), never the hot path.
    pub async fn texts_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            round_trip();
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("listing {prefix:?} keys on Redis: {e}"))?;
            if !keys.is_empty() {
                round_trip();
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("reading {prefix:?} keys on Redis: {e}"))?;
                for (k, v) in keys.into_iter().zip(values) {
                    if let (Some(v), Some(k)) = (v, k.strip_prefix(&self.prefix)) {
                        out.push((k.to_string(), v));
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(out);
            }
        }
    }

    /// Probes Redis while degraded; reconciles and switches back.
    async fn recover_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !self.is_degraded() {
                continue;
            }
            let mut conn = self.conn.clone();
            round_trip();
            if redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_err()
            {
                continue;
            }
            match self.reconcile().await {
                Ok(n) => {
                    self.degraded.store(false, Ordering::Release);
                    metrics::gauge!("tocsin_state_degraded").set(0.0);
                    metrics::counter!("tocsin_state_reconciled_total").increment(n as u64);
                    tracing::info!(
                        journal = n,
                        "Redis is back: replayed what was counted locally"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Redis back but reconciliation failed; retrying")
                }
            }
        }
    }

    /// Replays the journal of degraded batches onto Redis, then drops the
    /// local copies (see the module documentation). Returns the number of
    /// journal entries replayed.
    ///
    /// Runs with no degraded batch in flight (it holds the gate), so no
    /// local write is made after the journal was read. The replay commits
    /// each entry rule by rule under that rule's lock.
    async fn reconcile(self: &Arc<Self>) -> Result<usize, String> {
        let _exclusive = self.gate.write().await;
        let journal = self.local.texts_with_prefix(super::JOURNAL_PREFIX);
        let n = journal.len();
        if n > 0 {
            let Some(replay) = self.replayer.get() else {
                return Err("the pipeline is not running yet".into());
            };
            replay(journal).await?;
        }
        // Everything the local counters, lists, values and marks stood for
        // is now on shared state. Intents stay: they belong to the local
        // outbox.
        self.local
            .drain_where(|k| super::rule_of(k).is_some() || k.starts_with(super::JOURNAL_PREFIX));
        self.local.sync().await.map_err(|e| e.to_string())?;
        Ok(n)
    }

    /// The local (degraded-mode) state, for the replay to retire journal
    /// entries.
    pub fn local(&self) -> &Arc<EmbeddedState> {
        &self.local
    }
}

/// `text` with Redis glob characters escaped, for `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads (or creates) the instance id kept in `dir`.
fn instance_id(dir: &std::path::Path) -> Result<String, StateError> {
    let path = dir.join("instance-id");
    let io = |source| StateError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => write_instance_id(&path).map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            write_instance_id(&path).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

fn write_instance_id(path: &std::path::Path) -> std::io::Result<String> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    std::fs::write(path, &id)?;
    Ok(id)
}
