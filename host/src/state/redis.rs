//! The Redis state backend: several tocsin instances share counters.
//!
//! Pipeline batches reach it through a transaction ([`super::txn`]): rule
//! locks, one load per key, one atomic commit with the batch's outbox
//! entries. The direct operations below (each one Lua script or command,
//! so atomic across instances on its own) serve calls outside a batch.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use redis::{AsyncCommands, Script};

use super::conn::{Conn, Patience};
use super::{EmbeddedState, StateError, WindowHit};

const WINDOW_ADD: &str = r#"
local c = redis.call('HMGET', KEYS[1], 'c', 's')
local count = tonumber(c[1]) or 0
local start = tonumber(c[2])
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
if start == nil or (now - start) >= window then
  count = 0
  start = now
end
local before = count
local total = count + tonumber(ARGV[1])
local threshold = tonumber(ARGV[4])
local fires = 0
local after = total
if threshold > 0 then
  fires = math.floor(total / threshold)
  after = total % threshold
end
if after == 0 then
  redis.call('DEL', KEYS[1])
else
  local ns = start
  if fires > 0 then ns = now end
  redis.call('HSET', KEYS[1], 'c', string.format('%d', after), 's', string.format('%d', ns))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {before, fires, after, start}
"#;

const LIST_PUSH: &str = r#"
local n = redis.call('LLEN', KEYS[1])
if n < tonumber(ARGV[2]) then n = redis.call('RPUSH', KEYS[1], ARGV[1]) end
if tonumber(ARGV[3]) >= 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return n
"#;

const LIST_TAKE: &str = r#"
local v = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return v
"#;

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
    Txn(Box<super::txn::Txn>),
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
    pub(super) conn: Conn,
    pub(super) scripts: super::txn::Scripts,
    /// Keys to prefetch per rule (see [`super::txn::Txn::prefetch`]).
    pub(super) hints: Mutex<super::txn::Hints>,
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
    window_add: Script,
    list_push: Script,
    list_take: Script,
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
            scripts: super::txn::Scripts::new(),
            hints: Mutex::new(super::txn::Hints::default()),
            window_add: Script::new(WINDOW_ADD),
            list_push: Script::new(LIST_PUSH),
            list_take: Script::new(LIST_TAKE),
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
    pub async fn begin_shared(
        self: &Arc<Self>,
        rules: &[&str],
    ) -> Result<super::txn::Txn, super::txn::TxnError> {
        super::txn::Txn::begin(self.clone(), rules).await
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

    fn fail(&self, e: redis::RedisError) {
        self.fail_with(&e.to_string());
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

    /// Starts a batch on `rules`: a transaction (see [`super::txn`]), or,
    /// while degraded, the local state for the whole batch.
    pub async fn begin(self: &Arc<Self>, rules: &[&str]) -> Result<Begun, super::txn::TxnError> {
        loop {
            if self.is_degraded() {
                let guard = self.gate.clone().read_owned().await;
                // Reconciliation may have finished while this waited.
                if self.is_degraded() {
                    return Ok(Begun::Local(self.local.clone(), guard));
                }
            }
            match super::txn::Txn::begin(self.clone(), rules).await {
                Ok(t) => return Ok(Begun::Txn(Box::new(t))),
                Err(super::txn::TxnError::Redis(e)) => self.fail_with(&e),
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

    /// See the WIT `state.window-add`.
    pub async fn window_add(
        &self,
        key: &str,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> WindowHit {
        if !self.is_degraded() {
            let mut conn = self.conn.clone();
            round_trip();
            let r: redis::RedisResult<(i64, i64, i64, i64)> = self
                .window_add
                .key(self.key(key))
                .arg(delta)
                .arg(now)
                .arg(redis_ttl(window_ms))
                .arg(threshold)
                .invoke_async(&mut conn)
                .await;
            match r {
                Ok((before, fires, after, start)) => {
                    return WindowHit {
                        before: before.max(0) as u64,
                        fires: fires.clamp(0, u32::MAX as i64) as u32,
                        after: after.max(0) as u64,
                        window_start: start,
                    }
                }
                Err(e) => self.fail(e),
            }
        }
        self.local.window_add(key, delta, now, window_ms, threshold)
    }

    /// See the WIT `state.get`.
    pub async fn get(&self, key: &str) -> Option<String> {
        if !self.is_degraded() {
            let mut conn = self.conn.clone();
            round_trip();
            match conn.get::<_, Option<String>>(self.key(key)).await {
                Ok(v) => return v,
                // A key holding a counter or list is "no value", not an outage.
                Err(e) if e.code() == Some("WRONGTYPE") => return None,
                Err(e) => self.fail(e),
            }
        }
        self.local.get(key)
    }

    /// See the WIT `state.set` / `state.set-if-absent`.
    pub async fn set(
        &self,
        key: &str,
        value: String,
        ttl_ms: Option<u64>,
        only_if_absent: bool,
    ) -> bool {
        if !self.is_degraded() {
            let mut conn = self.conn.clone();
            round_trip();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key)).arg(&value);
            if let Some(ttl) = ttl_ms {
                cmd.arg("PX").arg(redis_ttl(ttl));
            }
            if only_if_absent {
                cmd.arg("NX");
            }
            match cmd.query_async::<Option<String>>(&mut conn).await {
                Ok(reply) => return reply.is_some(),
                Err(e) => self.fail(e),
            }
        }
        self.local.set(key, value, ttl_ms, only_if_absent)
    }

    /// See the WIT `state.delete`.
    pub async fn delete(&self, key: &str) {
        if !self.is_degraded() {
            let mut conn = self.conn.clone();
            round_trip();
            match conn.del::<_, i64>(self.key(key)).await {
                Ok(_) => {}
                Err(e) => self.fail(e),
            }
        }
        // Also locally: a key set during an outage must not resurrect.
        self.local.delete(key)
    }

    /// See the WIT `state.list-push`.
    pub async fn list_push(
        &self,
        key: &str,
        value: String,
        max_len: u32,
        ttl_ms: Option<u64>,
    ) -> u32 {
        if !self.is_degraded() {
            let mut conn = self.conn.clone();
            round_trip();
            let ttl: i64 = ttl_ms.map(|t| redis_ttl(t) as i64).unwrap_or(-1);
            match self
                .list_push
                .key(self.key(key))
                .arg(&value)
                .arg(max_len)
                .arg(ttl)
                .invoke_async::<i64>(&mut conn)
                .await
            {
                Ok(n) => return n.clamp(0, u32::MAX as i64) as u32,
                Err(e) => self.fail(e),
            }
        }
        self.local.list_push(key, value, max_len, ttl_ms)
    }

    /// See the WIT `state.list-take`.
    pub async fn list_take(&self, key: &str) -> Vec<String> {
        if !self.is_degraded() {
            let mut conn = self.conn.clone();
            round_trip();
            match self
                .list_take
                .key(self.key(key))
                .invoke_async::<Vec<String>>(&mut conn)
                .await
            {
                Ok(v) => return v,
                Err(e) => self.fail(e),
            }
        }
        self.local.list_take(key)
    }

    /// Text values under `prefix` (intents). Only local state holds
    /// intents: with Redis up, a batch's outbox entries go into the shared
    /// outbox with its commit ([`crate::cluster`]); intents are written
    /// only by batches that ran degraded, on local state. (No `KEYS` scan:
    /// on a Redis with millions of keys it blocks every instance.)
    pub async fn texts_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.local.texts_with_prefix(prefix)
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
