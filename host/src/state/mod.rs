//! Host-held plugin state: the backing of the WIT `state` interface.
//!
//! State lives here, not in plugin memory, so it survives plugin swaps,
//! traps and restarts. Every key is scoped to a rule by the caller
//! ([`scoped_key`]) so rules never see each other's counters.
//!
//! Two backends behind one interface: [`embedded`] (the default: local
//! data directory) and [`redis`] (several instances share counters).

pub mod conn;
pub mod embedded;
pub mod ops;
pub mod overlay;
pub mod redis;
pub mod scope;
mod usage;

use std::path::Path;
use std::sync::Arc;

pub use conn::Patience;
pub use embedded::EmbeddedState;
pub use ops::{Entry, StateOps, WindowHit};
pub use redis::RedisState;
pub use redis::{Txn, TxnError};
pub use scope::{BatchScope, CommitError, Pending, Receipt, Riders};
pub use usage::RuleUsage;

/// Errors of a state backend.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state backend is closed")]
    Closed,
    #[error("redis: {0}")]
    Redis(String),
}

/// The state backend the engine runs on. An enum rather than a trait object:
/// the embedded store is called on the hot path and should inline.
#[derive(Clone)]
pub enum StateStore {
    /// Local data directory: in-memory map plus a group-committed log.
    Embedded(Arc<EmbeddedState>),
    /// Redis, shared by instances; local fallback while Redis is down.
    Redis(Arc<RedisState>),
}

impl StateStore {
    /// Opens the embedded store in `dir`, replaying what a previous run left.
    pub fn open_embedded(dir: &Path) -> Result<Self, StateError> {
        Ok(Self::Embedded(Arc::new(EmbeddedState::open(dir)?)))
    }

    /// Stores `text` under a fresh intent key and returns the key. Intents
    /// are made durable by the next [`Self::sync`], together with every
    /// counter change before them; see [`crate::pipeline`].
    pub async fn put_intent(&self, text: String) -> String {
        let key = intent_key();
        self.local().set(&key, text, None).await;
        key
    }

    /// Every intent left by a previous run (key, text).
    pub async fn intents(&self) -> Vec<(String, String)> {
        self.local().texts_with_prefix(INTENT_PREFIX)
    }

    /// Drops an intent once the outbox holds it.
    pub async fn drop_intent(&self, key: &str) {
        self.local().delete(key).await;
    }

    /// The state on this machine: the embedded store, or Redis's local
    /// fallback. Intents live there whatever the backend: with Redis up, a
    /// batch's outbox entries go into the shared outbox with its commit
    /// ([`crate::cluster`]); only batches on local state write intents.
    fn local(&self) -> &EmbeddedState {
        match self {
            Self::Embedded(s) => s,
            Self::Redis(s) => s.local(),
        }
    }

    /// Every live text value whose key starts with `prefix` (host keys
    /// such as active alerts): on Redis, the shared ones (this machine's
    /// local ones while degraded).
    pub async fn texts_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        match self {
            Self::Embedded(s) => Ok(s.texts_with_prefix(prefix)),
            Self::Redis(s) if s.degraded().is_some() => Ok(s.local().texts_with_prefix(prefix)),
            Self::Redis(s) => s.texts_with_prefix(prefix).await,
        }
    }

    /// Drops every key of `rule` this machine holds (its plugin state and
    /// its dedup marks) and gives the memory back; returns how many. What
    /// a removed rule left in Redis expires with its TTLs: shared keys are
    /// not scanned for.
    pub fn purge_rule(&self, rule: &str) -> usize {
        let n = self.local().drain_where(|k| rule_of(k) == Some(rule));
        if n > 0 {
            crate::memory::give_back();
        }
        n
    }

    /// Waits until every change made so far is durable. Sources that must
    /// acknowledge only durable work (AMQP) call this before acking. With
    /// Redis, a change is recorded once Redis answered it.
    pub async fn sync(&self) -> Result<(), StateError> {
        match self {
            Self::Embedded(s) => s.sync().await,
            Self::Redis(s) => s.sync().await,
        }
    }

    /// [`Self::sync`] taken now, awaitable later (see
    /// [`EmbeddedState::sync_point`]).
    pub fn sync_point(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StateError>> + Send + 'static {
        self.local().sync_point()
    }

    /// Number of live keys, for metrics and the status API (a gauge, so
    /// there is no `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub async fn len(&self) -> usize {
        match self {
            Self::Embedded(s) => s.len(),
            Self::Redis(s) => s.len().await,
        }
    }

    /// Starts an isolated batch over `rules`: on the embedded store, on a
    /// private copy committed in one step ([`overlay`]), so a slow plugin
    /// call holds no other batch back; on Redis, as [`Self::begin`] (rule
    /// locks already keep other rules' batches going).
    pub async fn begin_isolated(&self, rules: &[&str]) -> Result<BatchScope, TxnError> {
        match self {
            Self::Embedded(s) => Ok(BatchScope::overlay(
                self.clone(),
                Arc::new(overlay::Overlay::new(s.clone())),
            )),
            Self::Redis(_) => self.begin(rules).await,
        }
    }

    /// Starts a batch over `rules` (see [`BatchScope`]).
    pub async fn begin(&self, rules: &[&str]) -> Result<BatchScope, TxnError> {
        match self {
            Self::Embedded(s) => {
                let open = s.open_batch().await;
                Ok(BatchScope::direct(self.clone(), false, None, open))
            }
            Self::Redis(s) => Ok(match s.begin(rules).await? {
                redis::Begun::Txn(t) => BatchScope::shared(self.clone(), Arc::from(t)),
                redis::Begun::Local(local, guard) => {
                    let open = local.open_batch().await;
                    BatchScope::direct(Self::Embedded(local), true, Some(guard), open)
                }
            }),
        }
    }

    /// What `rule`'s plugin keys hold in this machine's memory: the
    /// embedded store, or Redis's local fallback (with Redis up, the
    /// shared state is Redis's memory, and a batch's working set is bounded
    /// by the per-call quotas).
    pub fn rule_usage(&self, rule: &str) -> RuleUsage {
        self.local().rule_usage(rule)
    }

    /// Every rule holding plugin state in this machine's memory.
    pub fn usage(&self) -> Vec<(String, RuleUsage)> {
        self.local().usage()
    }

    /// Why the backend is degraded, if it is (Redis unreachable).
    pub fn degraded(&self) -> Option<String> {
        match self {
            Self::Embedded(_) => None,
            Self::Redis(s) => s.degraded(),
        }
    }
}

impl StateOps for StateStore {
    async fn update<R: Send>(
        &self,
        key: &str,
        op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool) + Send,
    ) -> R {
        match self {
            Self::Embedded(s) => s.apply(key, op),
            Self::Redis(s) => s.update_direct(key, op).await,
        }
    }
}

impl StateOps for StateView {
    async fn update<R: Send>(
        &self,
        key: &str,
        op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool) + Send,
    ) -> R {
        match self {
            Self::Direct(s) => s.update(key, op).await,
            Self::Txn(t) => t.update(key, op).await,
            Self::Local(o) => o.update(key, op).await,
        }
    }
}

/// What a batch reads and writes state through: the store itself, or its
/// transaction on the shared store. Cheap to clone.
#[derive(Clone)]
pub enum StateView {
    Direct(StateStore),
    Txn(Arc<Txn>),
    /// An isolated batch's private copy of embedded keys ([`overlay`]).
    Local(Arc<overlay::Overlay>),
}

impl StateView {
    /// Loads `keys` ahead of use when that saves round trips.
    pub async fn prefetch(&self, keys: &[String]) {
        if let Self::Txn(t) = self {
            t.prefetch(keys).await;
        }
    }
}

/// Prefix of intent keys; rule names cannot contain `\u{1e}`, so no plugin
/// key can collide with it.
const INTENT_PREFIX: &str = "\u{1e}intent\u{1f}";

/// A fresh intent key.
fn intent_key() -> String {
    format!("{INTENT_PREFIX}{}", uuid::Uuid::now_v7())
}

/// Prefix of the journal a degraded batch writes on local state (see
/// [`redis`]); rule names cannot contain `\u{1e}`.
pub const JOURNAL_PREFIX: &str = "\u{1e}journal\u{1f}";

/// A fresh journal key (time-ordered, so the replay keeps the order).
pub fn journal_key() -> String {
    format!("{JOURNAL_PREFIX}{}", uuid::Uuid::now_v7())
}

/// Key marking that `rule` has counted event `event_id`.
pub fn seen_key(rule: &str, event_id: &str) -> String {
    format!("{SEEN_PREFIX}{rule}\u{1f}{event_id}")
}

/// The rule a state key belongs to: a plugin key ([`scoped_key`]), a
/// dedup mark ([`seen_key`]), an active alert ([`active_key`]) or a
/// notification group ([`group_key`]); `None` for the host's own keys
/// (intents, the journal).
pub fn rule_of(key: &str) -> Option<&str> {
    let rest = match key
        .strip_prefix(SEEN_PREFIX)
        .or_else(|| key.strip_prefix(ACTIVE_PREFIX))
        .or_else(|| key.strip_prefix(GROUP_PREFIX))
    {
        Some(rest) => rest,
        None if key.starts_with('\u{1e}') => return None,
        None => key,
    };
    rest.split('\u{1f}').next()
}

/// Prefix of active-alert keys ([`crate::active`] keeps them; the state
/// module names every host key, so it can tell whose a key is). Rule names
/// cannot contain `\u{1e}`, so no plugin key can collide with it.
pub const ACTIVE_PREFIX: &str = "\u{1e}active\u{1f}";

/// The state key of `rule`'s active alert `key`.
pub fn active_key(rule: &str, key: &str) -> String {
    format!("{ACTIVE_PREFIX}{rule}\u{1f}{key}")
}

/// Prefix of notification groups ([`crate::group`]), under their rule.
pub const GROUP_PREFIX: &str = "\u{1e}group\u{1f}";

/// The state key of `rule`'s notification group `key`.
pub fn group_key(rule: &str, key: &str) -> String {
    format!("{GROUP_PREFIX}{rule}\u{1f}{key}")
}

/// Prefix of dedup marks.
const SEEN_PREFIX: &str = "\u{1e}seen\u{1f}";

/// Scopes a plugin's key to its rule: `rule` + unit separator + `key`.
pub fn scoped_key(rule: &str, key: &str) -> String {
    let mut out = String::with_capacity(rule.len() + 1 + key.len());
    out.push_str(rule);
    out.push('\u{1f}');
    out.push_str(key);
    out
}
