//! A pipeline batch's transaction on the shared (Redis) state.
//!
//! Why: with several instances on one queue, a batch's counter changes,
//! its dedup marks and the alerts they complete must become visible
//! together. Applied one by one, an instance killed between "counted" and
//! "alert recorded" loses the alert: the redelivered events are recognised
//! as counted. So a batch:
//!
//! 1. takes the cluster-wide lock of every rule it feeds (one Lua call,
//!    all or nothing, so two instances never deadlock); the lock is a lease
//!    that expires, so a killed holder stalls the rule for at most
//!    [`LOCK_LEASE`];
//! 2. reads each key it touches from Redis once, then works on a private
//!    copy with the same operations as the embedded store ([`crate::state::ops`]);
//! 3. commits in one Lua call that checks it still holds its locks, writes
//!    every changed key, the dedup marks and the batch's outbox entries,
//!    and releases the locks.
//!
//! A crash before 3 changes nothing in Redis: the source redelivers and the
//! events are counted afresh. A failed plugin call is rolled back to a
//! [`Checkpoint`], so a trap leaves no partial writes either. The price is
//! that one rule's aggregation runs on one instance at a time; matching,
//! routing, rendering and delivery, and different rules, run in parallel.
//!
//! Longer than ~500 lines on purpose: lock, load, read, write, commit and
//! resolve share the private slots and the lease; split, each part would
//! reach into the others' insides (how this module once was, with
//! `RedisState`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Script;
use tokio::sync::Mutex;

use super::super::ops::{Entry, StateOps, Value};
use super::super::StateError;
use super::RedisState;
use crate::event::now_ms;

/// How long a rule lock outlives a holder that stopped answering.
pub const LOCK_LEASE: Duration = Duration::from_secs(5);
/// How long a batch waits for its rules' locks before it fails (and its
/// events are redelivered). Long: a holder renews its lease only while it
/// runs, so a wait this long means a stuck holder, while a short one would
/// fail (and, after the retries, dead-letter) events merely because a busy
/// machine made every batch slow.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Takes every lock in KEYS with token ARGV[1] for ARGV[2] ms, or none.
const ACQUIRE: &str = include_str!("lua/acquire.lua");

/// Reads one key as `{kind, pttl, fields...}`.
const LOAD: &str = include_str!("lua/load.lua");

/// Checks the locks in KEYS still hold token ARGV[1], applies the writes
/// encoded in ARGV[2..] and releases the locks. Keys are passed in ARGV:
/// tocsin runs on a single Redis (or one primary), not Redis Cluster.
/// Numbers arrive as integer strings made in Rust and are handed to Redis
/// as they are (a Lua number could be formatted as `1e+10`, which Redis
/// refuses); TTLs are clamped to [`super::MAX_TTL_MS`] beforehand.
const COMMIT: &str = include_str!("lua/commit.lua");

/// Extends the locks in KEYS still held with token ARGV[1] to ARGV[2] ms.
const RENEW: &str = include_str!("lua/renew.lua");

/// Releases the locks in KEYS still held with token ARGV[1].
const RELEASE: &str = include_str!("lua/release.lua");

/// The Lua scripts a transaction runs, loaded once per backend.
pub(super) struct Scripts {
    acquire: Script,
    load: Script,
    commit: Script,
    renew: Script,
    release: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            acquire: Script::new(ACQUIRE),
            load: Script::new(LOAD),
            commit: Script::new(COMMIT),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        }
    }
}

/// One key as the batch sees it.
#[derive(Clone)]
struct Slot {
    entry: Option<Entry>,
    dirty: bool,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<String, Slot>,
    /// Outbox entries to write with the commit: (hash key, field, value).
    outbox: Vec<(String, String, String)>,
    /// The first Redis error: the batch cannot commit.
    broken: Option<String>,
    /// Keys loaded one at a time: prefetched by the rule's next batches.
    loaded_alone: Vec<String>,
}

/// See the module documentation.
pub struct Txn {
    /// Extends the locks' lease while the batch runs (a long batch keeps
    /// them; a dead one lets them lapse). Stopped on commit, abort or drop.
    renewer: tokio::task::JoinHandle<()>,
    redis: Arc<RedisState>,
    /// Full (prefixed) lock keys held.
    locks: Vec<String>,
    /// The rules locked (for prefetch hints).
    rules: Vec<String>,
    token: String,
    inner: Mutex<Inner>,
}

/// A copy of a transaction's private state to roll back to.
pub struct Checkpoint(HashMap<String, Slot>);

/// Why a transaction could not start or commit.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("Redis failed during the batch: {0}")]
    Redis(String),
    #[error("the lock of rule(s) {0} was not free within {1:?}")]
    LockTimeout(String, Duration),
    #[error("the batch outlived its rule lock lease ({0}); it will be redone")]
    LockLost(String),
    #[error("Redis did not answer the commit ({0}); whether it applied is unknown")]
    Unknown(String),
}

/// How long a commit marker is kept (far longer than any resolve waits
/// past the lease).
const MARKER_TTL_MS: u64 = 3_600_000;

/// The key marking that the transaction with `token` committed.
fn commit_marker(token: &str) -> String {
    format!("\u{1e}commit\u{1f}{token}")
}

impl From<TxnError> for StateError {
    fn from(e: TxnError) -> Self {
        StateError::Redis(e.to_string())
    }
}

impl Txn {
    /// Takes the locks of `rules`, waiting while another batch holds any.
    pub(super) async fn begin(redis: Arc<RedisState>, rules: &[&str]) -> Result<Self, TxnError> {
        let mut locks: Vec<String> = rules
            .iter()
            .map(|r| redis.key(&format!("\u{1e}lock\u{1f}{r}")))
            .collect();
        locks.sort();
        locks.dedup();
        let token = uuid::Uuid::now_v7().simple().to_string();
        let started = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let mut conn = redis.conn.clone();
            let mut call = redis.scripts.acquire.prepare_invoke();
            for k in &locks {
                call.key(k);
            }
            call.arg(&token).arg(LOCK_LEASE.as_millis() as u64);
            super::round_trip();
            let got: i64 = call
                .invoke_async(&mut conn)
                .await
                .map_err(|e| TxnError::Redis(e.to_string()))?;
            if got == 1 {
                break;
            }
            if started.elapsed() > LOCK_WAIT {
                return Err(TxnError::LockTimeout(rules.join(", "), LOCK_WAIT));
            }
            metrics::counter!("tocsin_state_lock_waits_total").increment(1);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        metrics::histogram!("tocsin_state_lock_wait_seconds")
            .record(started.elapsed().as_secs_f64());
        let renewer = tokio::spawn(renew(redis.clone(), locks.clone(), token.clone()));
        Ok(Self {
            rules: rules.iter().map(|r| r.to_string()).collect(),
            renewer,
            redis,
            locks,
            token,
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                outbox: Vec::new(),
                broken: None,
                loaded_alone: Vec::new(),
            }),
        })
    }

    /// Loads `keys` the batch is about to need, in one round trip, with
    /// the keys its rules' plugins touched in recent batches (loading a
    /// key that is not used costs little; loading it alone when the plugin
    /// asks costs a round trip).
    pub async fn prefetch(&self, keys: &[String]) {
        let hinted = self.redis.hints.lock().keys_for(&self.rules);
        let mut inner = self.inner.lock().await;
        let mut missing: Vec<&String> = keys
            .iter()
            .chain(hinted.iter())
            .filter(|k| !inner.slots.contains_key(*k))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() || inner.broken.is_some() {
            return;
        }
        let calls: Vec<_> = missing
            .iter()
            .map(|k| self.redis.scripts.load.key(self.redis.key(k)))
            .collect();
        let mut pipe = redis::pipe();
        pipe.load_script(&self.redis.scripts.load).ignore();
        for call in &calls {
            pipe.invoke_script(call);
        }
        let mut conn = self.redis.conn.clone();
        super::round_trip();
        match pipe.query_async::<Vec<Vec<String>>>(&mut conn).await {
            Ok(rows) => {
                let now = now_ms();
                for (k, row) in missing.into_iter().zip(rows) {
                    let entry = decode(&row, now);
                    inner.slots.insert(
                        k.clone(),
                        Slot {
                            entry,
                            dirty: false,
                        },
                    );
                }
            }
            Err(e) => inner.broken = Some(e.to_string()),
        }
    }

    /// Runs `op` on the batch's copy of `key`, loading it first if needed
    /// (see [`StateOps::update`]).
    async fn with<R>(&self, key: &str, op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool)) -> R {
        let mut inner = self.inner.lock().await;
        if !inner.slots.contains_key(key) {
            let entry = if inner.broken.is_some() {
                None
            } else {
                let mut conn = self.redis.conn.clone();
                super::round_trip();
                match self
                    .redis
                    .scripts
                    .load
                    .key(self.redis.key(key))
                    .invoke_async::<Vec<String>>(&mut conn)
                    .await
                {
                    Ok(row) => decode(&row, now_ms()),
                    Err(e) => {
                        inner.broken = Some(e.to_string());
                        None
                    }
                }
            };
            inner.slots.insert(
                key.to_string(),
                Slot {
                    entry,
                    dirty: false,
                },
            );
            inner.loaded_alone.push(key.to_string());
        }
        let slot = inner.slots.entry(key.to_string()).or_insert(Slot {
            entry: None,
            dirty: false,
        });
        let (out, changed) = op(&mut slot.entry, now_ms());
        slot.dirty |= changed;
        out
    }

    /// Adds `fields` to write into this instance's shared outbox hash
    /// ([`super::outbox_key`]) with the commit: the batch's riders (see
    /// [`crate::state::scope`]).
    pub async fn ride(&self, fields: Vec<(String, String)>) {
        let key = self.redis.key(&super::outbox_key(self.redis.instance()));
        let mut inner = self.inner.lock().await;
        for (field, value) in fields {
            inner.outbox.push((key.clone(), field, value));
        }
    }

    /// Removes `fields` from this instance's shared outbox; best effort.
    pub async fn forget_fields(&self, fields: &[String]) {
        self.redis
            .forget_fields(&super::outbox_key(self.redis.instance()), fields)
            .await;
    }

    /// A copy of the batch's private state, to undo a failed plugin call.
    pub async fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.inner.lock().await.slots.clone())
    }

    /// Undoes everything since `cp`.
    pub async fn restore(&self, cp: Checkpoint) {
        self.inner.lock().await.slots = cp.0;
    }

    /// Writes every change and outbox entry atomically and releases the
    /// locks (see the module documentation).
    pub async fn commit(&self) -> Result<(), TxnError> {
        self.renewer.abort();
        let inner = std::mem::take(&mut *self.inner.lock().await);
        if let Some(e) = inner.broken {
            self.redis.fail_with(&e);
            release(&self.redis, &self.locks, &self.token).await;
            return Err(TxnError::Redis(e));
        }
        let now = now_ms();
        let mut call = self.redis.scripts.commit.prepare_invoke();
        for k in &self.locks {
            call.key(k);
        }
        call.arg(&self.token);
        for (key, slot) in &inner.slots {
            if !slot.dirty {
                continue;
            }
            let full = self.redis.key(key);
            let ttl = |e: &Entry| {
                e.expires_at
                    .map(|t| super::redis_ttl(t.saturating_sub(now).max(1) as u64))
                    .unwrap_or(0)
            };
            match &slot.entry {
                Some(e) if e.expires_at.is_some_and(|t| t <= now) => {
                    call.arg("D").arg(full).arg(0);
                }
                None => {
                    call.arg("D").arg(full).arg(0);
                }
                Some(e) => match &e.value {
                    Value::Text(v) => {
                        call.arg("T").arg(full).arg(ttl(e)).arg(v);
                    }
                    Value::Counter {
                        count,
                        window_start,
                    } => {
                        call.arg("C")
                            .arg(full)
                            .arg(ttl(e))
                            .arg(count)
                            .arg(window_start);
                    }
                    Value::List(items) => {
                        call.arg("L").arg(full).arg(ttl(e)).arg(items.len());
                        for v in items {
                            call.arg(v);
                        }
                    }
                },
            }
        }
        for (hash, field, value) in &inner.outbox {
            call.arg("H").arg(hash).arg(0).arg(field).arg(value);
        }
        // The marker [`Self::resolve`] looks for.
        call.arg("T")
            .arg(self.redis.key(&commit_marker(&self.token)))
            .arg(MARKER_TTL_MS)
            .arg("1");
        let mut conn = self.redis.conn.clone();
        super::round_trip();
        match call.invoke_async::<i64>(&mut conn).await {
            Ok(_) => {
                self.redis.hints.lock().learn(inner.loaded_alone);
                Ok(())
            }
            Err(e) if e.to_string().contains("LOCKLOST") => {
                metrics::counter!("tocsin_state_lock_lost_total").increment(1);
                // Locks still held under this token would stall the redo.
                release(&self.redis, &self.locks, &self.token).await;
                Err(TxnError::LockLost(e.to_string()))
            }
            Err(e) if crate::state::conn::is_outage(&e) => {
                // Whether Redis applied it is unknown: see [`Self::resolve`].
                self.redis.fail_with(&e.to_string());
                Err(TxnError::Unknown(e.to_string()))
            }
            Err(e) => {
                self.redis.fail_with(&e.to_string());
                Err(TxnError::Redis(e.to_string()))
            }
        }
    }

    /// Whether a commit that ended in [`TxnError::Unknown`] was applied,
    /// waiting for Redis as long as it takes to know.
    ///
    /// The commit writes a marker with everything else. Once the locks'
    /// lease has lapsed since the commit was sent, a commit Redis had not
    /// run yet can no longer apply (its lock check fails), so an absent
    /// marker then means "not applied" for good. Why wait rather than
    /// redo: redoing an applied commit on local state counts its events
    /// twice and sends its alerts twice.
    pub async fn resolve(&self) -> bool {
        let marker = self.redis.key(&commit_marker(&self.token));
        let sent = Instant::now();
        let mut warned = false;
        loop {
            let mut conn = self.redis.connection();
            match redis::AsyncCommands::exists::<_, bool>(&mut conn, &marker).await {
                Ok(true) => return true,
                Ok(false) if sent.elapsed() > LOCK_LEASE + Duration::from_secs(1) => return false,
                Ok(false) => {}
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "waiting for Redis to learn whether a batch committed");
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Gives up: releases the locks, writes nothing.
    pub async fn abort(&self) {
        self.renewer.abort();
        release(&self.redis, &self.locks, &self.token).await;
    }
}

impl StateOps for Txn {
    fn update<R: Send>(
        &self,
        key: &str,
        op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool) + Send,
    ) -> impl std::future::Future<Output = R> + Send {
        self.with(key, op)
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Extends `locks` held with `token` every third of the lease.
async fn renew(redis: Arc<RedisState>, locks: Vec<String>, token: String) {
    loop {
        tokio::time::sleep(LOCK_LEASE / 3).await;
        let mut call = redis.scripts.renew.prepare_invoke();
        for k in &locks {
            call.key(k);
        }
        call.arg(&token).arg(LOCK_LEASE.as_millis() as u64);
        let mut conn = redis.connection();
        if let Err(e) = call.invoke_async::<i64>(&mut conn).await {
            tracing::warn!(error = %e, "could not renew rule locks");
        }
    }
}

/// Releases `locks` still held with `token`.
async fn release(redis: &RedisState, locks: &[String], token: &str) {
    let mut call = redis.scripts.release.prepare_invoke();
    for k in locks {
        call.key(k);
    }
    call.arg(token);
    let mut conn = redis.connection();
    if let Err(e) = call.invoke_async::<i64>(&mut conn).await {
        tracing::warn!(error = %e, "could not release rule locks; they expire with their lease");
    }
}

/// Decodes a `LOAD` reply; `host_now` turns the TTL into an expiry.
fn decode(row: &[String], host_now: i64) -> Option<Entry> {
    let kind = row.first()?;
    let expires_at = row
        .get(1)
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|t| *t > 0)
        .map(|t| host_now + t);
    // Counters written by older versions' scripts may hold Lua-formatted
    // numbers (`1.7e+12`).
    let int = |s: &String| -> Option<i64> {
        s.parse::<i64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
    };
    let value = match kind.as_str() {
        "c" => Value::Counter {
            count: int(row.get(2)?)?.max(0) as u64,
            window_start: int(row.get(3)?)?,
        },
        "t" => Value::Text(row.get(2)?.clone()),
        "l" => Value::List(row[2..].to_vec()),
        _ => return None,
    };
    Some(Entry { value, expires_at })
}
