//! Silences: an operator mutes the alerts that match a set of label
//! matchers for a while ("service=device-service for 2 h"). A muted alert
//! is still counted and recorded — the history shows which silence muted
//! it — but no channel is called for it.
//!
//! The model and the API are Alertmanager's v2 ([`model`],
//! [`crate::api::silences`]), so `amtool silence add / query / expire /
//! import` work against tocsin unchanged. Where they are kept follows the
//! state backend: embedded, a JSON file in the data directory written
//! atomically on every change; on Redis, one hash shared by every
//! instance (`<prefix>silences`, a field per silence), re-read every
//! [`REFRESH`] so a silence made on one instance mutes on all within that.
//! The pipeline reads an in-memory snapshot: a silence check costs no I/O.
//! Expired silences are kept [`RETENTION_MS`] (Alertmanager's default), then
//! dropped.

pub mod model;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::AsyncCommands;

pub use model::{parse_matcher, Matcher, PostableSilence, Silence, SilenceState};

use crate::event::now_ms;
use crate::plugin::bindings::Alert;
use crate::state::{RedisState, StateStore};

/// How often an instance on Redis re-reads the shared silences.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long an expired silence is kept (listed as expired) before it is
/// dropped: five days, as in Alertmanager.
pub const RETENTION_MS: i64 = 5 * 24 * 3600 * 1000;

/// Why a silence operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("silence {0} not found")]
    NotFound(String),
    #[error("silence {0} already expired")]
    AlreadyExpired(String),
    #[error("invalid silence: {0}")]
    Invalid(String),
    #[error("silences could not be stored: {0}")]
    Storage(String),
}

enum Backend {
    /// `<data>/silences.json`.
    File(PathBuf),
    /// The shared hash on Redis.
    Redis(Arc<RedisState>),
    /// Nowhere: `tocsin check` and scratch engines.
    Memory,
}

struct Inner {
    snapshot: ArcSwap<Vec<Silence>>,
    backend: Backend,
    /// One change at a time on this instance (read, modify, write).
    write: tokio::sync::Mutex<()>,
}

/// The silences, shared by the API and the pipeline workers. Cheap to
/// clone.
#[derive(Clone)]
pub struct Silences {
    inner: Arc<Inner>,
}

impl Silences {
    /// Silences kept nowhere (for `tocsin check` and tests of the pipeline).
    pub fn in_memory() -> Self {
        Self::with(Backend::Memory, Vec::new())
    }

    fn with(backend: Backend, silences: Vec<Silence>) -> Self {
        Self {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(silences),
                backend,
                write: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Opens the silences of the engine's state: `data/silences.json`
    /// embedded, the shared hash on Redis (then kept fresh by a task).
    pub async fn open(data: &std::path::Path, state: &StateStore) -> Result<Self, SilenceError> {
        let me = match state {
            StateStore::Embedded(_) => {
                let path = data.join("silences.json");
                let silences = read_file(&path)?;
                Self::with(Backend::File(path), silences)
            }
            StateStore::Redis(redis) => {
                // Redis down at start: serve (unmuted) rather than not at
                // all; the refresh loads them as soon as it answers.
                let silences = read_redis(redis).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "the shared silences could not be read; starting without them until Redis answers");
                    Vec::new()
                });
                let me = Self::with(Backend::Redis(redis.clone()), silences);
                me.keep_fresh();
                me
            }
        };
        Ok(me)
    }

    /// Re-reads the shared hash every [`REFRESH`] while the silences live.
    fn keep_fresh(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(inner) = weak.upgrade() else { return };
                let Backend::Redis(redis) = &inner.backend else {
                    return;
                };
                match read_redis(redis).await {
                    Ok(list) => inner.snapshot.store(Arc::new(list)),
                    // Keep muting with what we had: Redis comes back.
                    Err(e) => tracing::debug!(error = %e, "re-reading the shared silences failed"),
                }
            }
        });
    }

    /// Every silence (pending, active, and expired within the retention).
    pub fn list(&self) -> Arc<Vec<Silence>> {
        self.inner.snapshot.load_full()
    }

    /// One silence by id.
    pub fn get(&self, id: &str) -> Option<Silence> {
        self.list().iter().find(|s| s.id == id).cloned()
    }

    /// The ids of the silences muting, at `now`, an alert whose labels
    /// `labels` gives.
    pub fn muting<'a>(&self, now: i64, labels: impl Fn(&str) -> Option<&'a str>) -> Vec<String> {
        self.inner
            .snapshot
            .load()
            .iter()
            .filter(|s| s.state(now) == SilenceState::Active && s.mutes(&labels))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Creates a silence, or updates the one `post.id` names: in place
    /// while it is pending, or active with the same matchers and start;
    /// otherwise (as Alertmanager does) the old one is expired and a new
    /// one made. Returns the id of the silence now in force.
    pub async fn upsert(&self, post: PostableSilence) -> Result<String, SilenceError> {
        let now = now_ms();
        let (id, mut silence) = post.validate(now).map_err(SilenceError::Invalid)?;
        let _one = self.inner.write.lock().await;
        let mut all = self.current().await?;
        let mut changed = Vec::new();
        let in_place = match &id {
            None => None,
            Some(id) => {
                let old = all
                    .iter_mut()
                    .find(|s| &s.id == id)
                    .ok_or_else(|| SilenceError::NotFound(id.clone()))?;
                let state = old.state(now);
                let same = old.matchers == silence.matchers && old.starts_at == silence.starts_at;
                if state == SilenceState::Pending || (state == SilenceState::Active && same) {
                    Some(id.clone())
                } else {
                    if state != SilenceState::Expired {
                        expire_at(old, now);
                        changed.push(old.clone());
                    }
                    None
                }
            }
        };
        silence.id = in_place.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        all.retain(|s| s.id != silence.id);
        all.push(silence.clone());
        changed.push(silence.clone());
        self.store(all, &changed, now).await?;
        tracing::info!(silence = %silence.id, by = %silence.created_by, matchers = %silence.matchers.iter().map(Matcher::display).collect::<Vec<_>>().join(","), "silence set");
        Ok(silence.id)
    }

    /// Expires silence `id` now.
    pub async fn expire(&self, id: &str) -> Result<(), SilenceError> {
        let now = now_ms();
        let _one = self.inner.write.lock().await;
        let mut all = self.current().await?;
        let s = all
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        if s.state(now) == SilenceState::Expired {
            return Err(SilenceError::AlreadyExpired(id.to_string()));
        }
        expire_at(s, now);
        let changed = vec![s.clone()];
        self.store(all, &changed, now).await?;
        tracing::info!(silence = %id, "silence expired");
        Ok(())
    }

    /// The silences as stored right now (the shared hash, on Redis: another
    /// instance may have changed it since the last refresh).
    async fn current(&self) -> Result<Vec<Silence>, SilenceError> {
        match &self.inner.backend {
            Backend::Redis(redis) => read_redis(redis).await,
            _ => Ok(self.list().as_ref().clone()),
        }
    }

    /// Writes `all` (the `changed` ones, on Redis), dropping silences past
    /// their retention, and makes it the snapshot.
    async fn store(
        &self,
        mut all: Vec<Silence>,
        changed: &[Silence],
        now: i64,
    ) -> Result<(), SilenceError> {
        let (keep, gone): (Vec<Silence>, Vec<Silence>) =
            all.drain(..).partition(|s| s.ends_at + RETENTION_MS > now);
        match &self.inner.backend {
            Backend::Memory => {}
            Backend::File(path) => write_file(path, &keep)?,
            Backend::Redis(redis) => write_redis(redis, changed, &gone).await?,
        }
        self.inner.snapshot.store(Arc::new(keep));
        Ok(())
    }
}

/// Ends `s` at `now` (a pending one starts and ends now).
fn expire_at(s: &mut Silence, now: i64) {
    if s.starts_at > now {
        s.starts_at = now;
    }
    s.ends_at = now;
    s.updated_at = now;
}

/// The labels an alert of rule `rule` is matched on: its own labels (the
/// error code and service, an aggregator's labels, Prometheus labels as
/// they came), plus `rule`, `severity` and `alertname` (the error code, as
/// Alertmanager users name an alert) unless the alert has them.
pub fn alert_label<'a>(rule: &'a str, alert: &'a Alert, name: &str) -> Option<&'a str> {
    if let Some((_, v)) = alert.labels.iter().find(|(k, _)| k == name) {
        return Some(v);
    }
    match name {
        "rule" => Some(rule),
        "severity" => Some(crate::event::Severity::from(alert.severity).as_str()),
        "alertname" => alert_label(rule, alert, "error-code"),
        _ => None,
    }
}

fn parse(text: &str, what: &str) -> Option<Silence> {
    match serde_json::from_str::<Silence>(text) {
        Ok(mut s) => match s.compile() {
            Ok(()) => Some(s),
            Err(e) => {
                tracing::warn!(silence = %s.id, error = %e, "ignoring a stored silence");
                None
            }
        },
        Err(e) => {
            tracing::warn!(what, error = %e, "ignoring an unreadable stored silence");
            None
        }
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<Silence>, SilenceError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SilenceError::Storage(format!("{}: {e}", path.display()))),
    };
    let values: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| SilenceError::Storage(format!("{}: {e}", path.display())))?;
    Ok(values
        .iter()
        .filter_map(|v| parse(&v.to_string(), "silences.json"))
        .collect())
}

/// Writes `silences` to `path` atomically: a temporary file, synced, then
/// renamed over the old one.
fn write_file(path: &std::path::Path, silences: &[Silence]) -> Result<(), SilenceError> {
    use std::io::Write;
    let fail = |e: std::io::Error| SilenceError::Storage(format!("{}: {e}", path.display()));
    let text =
        serde_json::to_string_pretty(silences).map_err(|e| SilenceError::Storage(e.to_string()))?;
    let tmp = path.with_extension("json.part");
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn redis_key(redis: &RedisState) -> String {
    redis.key("silences")
}

async fn read_redis(redis: &RedisState) -> Result<Vec<Silence>, SilenceError> {
    let mut conn = redis.connection();
    let fields: std::collections::HashMap<String, String> = conn
        .hgetall(redis_key(redis))
        .await
        .map_err(|e| SilenceError::Storage(format!("redis: {e}")))?;
    let mut list: Vec<Silence> = fields.values().filter_map(|t| parse(t, "redis")).collect();
    list.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then(a.id.cmp(&b.id)));
    Ok(list)
}

async fn write_redis(
    redis: &RedisState,
    changed: &[Silence],
    gone: &[Silence],
) -> Result<(), SilenceError> {
    let key = redis_key(redis);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for s in changed {
        let text = serde_json::to_string(s).map_err(|e| SilenceError::Storage(e.to_string()))?;
        pipe.hset(&key, &s.id, text).ignore();
    }
    for s in gone {
        pipe.hdel(&key, &s.id).ignore();
    }
    let mut conn = redis.connection();
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(|e| SilenceError::Storage(format!("redis: {e}")))
}
