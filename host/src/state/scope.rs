//! One batch's hold on state, from its first read to its commit point.
//!
//! Why a scope: the pipeline must not care which backend a batch runs on.
//! A scope decides once, when the batch starts, what the batch reads and
//! writes through (the embedded store, a Redis transaction, or the local
//! fallback while Redis is down), and [`BatchScope::commit`] makes the
//! batch durable together with its *riders* — the records that must
//! become durable at the same instant as the counters (the outbox's
//! notifications and deliveries). Each backend carries riders its own
//! way: locally as an intent key synced with the counters, on Redis as
//! hash fields in the transaction's one atomic call.

use std::sync::Arc;

use super::overlay::{self, Overlay};
use super::redis::{self, Txn, TxnError};
use super::{StateStore, StateView};

/// Records a batch commits with its state changes (see the module
/// documentation), encoded lazily for the backend the batch is on.
pub trait Riders: Sync {
    /// Nothing to carry.
    fn is_empty(&self) -> bool;
    /// The riders as one text, for the local intent.
    fn intent(&self) -> Result<String, String>;
    /// The riders as fields of the instance's shared outbox hash, and
    /// which of those fields to drop once the riders are recorded locally.
    fn shared_fields(&self) -> (Vec<(String, String)>, Vec<String>);
}

/// Why a batch is not durable.
#[derive(Debug)]
pub enum CommitError {
    /// Nothing was committed; the batch can be redone.
    Again(String),
    /// Failed after (or regardless of) the commit point.
    Failed(String),
}

/// How one batch works on state. With the embedded store, directly (its
/// log commits a batch's changes with its intent). With Redis, through a
/// transaction ([`redis::txn`]), or, while Redis is unreachable, on the
/// local state for the whole batch, never switching halfway.
pub struct BatchScope {
    /// What the batch's stages read and write.
    pub view: StateView,
    /// Where the batch's intent goes when there is no transaction.
    pub(super) store: StateStore,
    /// The transaction to commit, if any.
    txn: Option<Arc<Txn>>,
    /// The private copy to commit, for an isolated batch on local state.
    overlay: Option<Arc<Overlay>>,
    /// The batch runs on local state because Redis is unreachable: it
    /// writes a journal entry for the replay ([`super::JOURNAL_PREFIX`]).
    pub journal: bool,
    _local: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
    /// The batch is open on the local log (see
    /// [`super::embedded::EmbeddedState::open_batch`]); dropped at the
    /// commit point, before waiting for the log.
    open: parking_lot::Mutex<Option<super::embedded::BatchGuard>>,
}

/// What is left to do once the riders are recorded elsewhere (the local
/// outbox): drop the intent, or the shared entries that need no delivery.
pub struct Receipt {
    store: StateStore,
    leftover: Leftover,
    /// Set when the commit point is still to come: a batch without riders
    /// on local state is durable once this resolves (nothing waits on it
    /// before the delivery stage, as the batch delivers nothing).
    pub pending: Option<Pending>,
}

/// A commit point not reached yet (see [`Receipt::pending`]).
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'static>>;

enum Leftover {
    Nothing,
    Intent(String),
    SharedFields(Arc<Txn>, Vec<String>),
}

impl Receipt {
    /// Drops what only had to last until the riders were recorded;
    /// returns the commit point still to come, if any.
    pub async fn finish(self) -> Option<Pending> {
        match self.leftover {
            Leftover::Nothing => {}
            Leftover::Intent(key) => self.store.drop_intent(&key).await,
            Leftover::SharedFields(txn, fields) => txn.forget_fields(&fields).await,
        }
        self.pending
    }
}

impl BatchScope {
    /// A scope on the embedded store (or Redis's local fallback).
    pub(super) fn direct(
        store: StateStore,
        journal: bool,
        guard: Option<Guard>,
        open: super::embedded::BatchGuard,
    ) -> Self {
        Self {
            view: StateView::Direct(store.clone()),
            store,
            txn: None,
            overlay: None,
            journal,
            _local: guard,
            open: parking_lot::Mutex::new(Some(open)),
        }
    }

    /// A scope through a transaction on shared state.
    pub fn shared(store: StateStore, txn: Arc<Txn>) -> Self {
        Self {
            view: StateView::Txn(txn.clone()),
            store,
            txn: Some(txn),
            overlay: None,
            journal: false,
            _local: None,
            open: parking_lot::Mutex::new(None),
        }
    }

    /// An isolated scope on a private copy of local keys ([`overlay`]):
    /// it holds no batch gate.
    pub(super) fn overlay(store: StateStore, copy: Arc<Overlay>) -> Self {
        Self {
            view: StateView::Local(copy.clone()),
            store,
            txn: None,
            overlay: Some(copy),
            journal: false,
            _local: None,
            open: parking_lot::Mutex::new(None),
        }
    }

    /// The store the batch's own records (the journal) go to.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Whether the batch runs through a transaction whose commit can fail
    /// and be redone (then its effects must stay invisible until then).
    pub fn transactional(&self) -> bool {
        self.txn.is_some()
    }

    /// Undo point for a failed plugin call: a transaction's writes can be
    /// undone; direct writes are the plugin's own (it tolerates them, as
    /// after a trap in any store).
    pub async fn checkpoint(&self) -> Checkpoint {
        match (&self.txn, &self.overlay) {
            (Some(t), _) => Checkpoint::Shared(t.checkpoint().await),
            (None, Some(o)) => Checkpoint::Local(o.snapshot()),
            (None, None) => Checkpoint::Direct,
        }
    }

    /// Undoes everything since `cp`.
    pub async fn restore(&self, cp: Checkpoint) {
        match (cp, &self.txn, &self.overlay) {
            (Checkpoint::Shared(cp), Some(t), _) => t.restore(cp).await,
            (Checkpoint::Local(cp), _, Some(o)) => o.restore(cp),
            _ => {}
        }
    }

    /// The commit point: makes the batch's state changes and `riders`
    /// durable at once. Without riders on local state nothing waits here:
    /// with `sync`, the receipt's [`Receipt::pending`] resolves at the
    /// commit point. The [`Receipt`] is finished once the
    /// riders are recorded where they go next.
    pub async fn commit(&self, riders: &dyn Riders, sync: bool) -> Result<Receipt, CommitError> {
        let store = self.store.clone();
        if let Some(copy) = &self.overlay {
            return commit_overlay(store, copy, riders, sync).await;
        }
        let Some(txn) = &self.txn else {
            let leftover = if riders.is_empty() {
                self.open.lock().take();
                let pending = sync.then(|| -> Pending {
                    let point = store.sync_point();
                    Box::pin(async move { point.await.map_err(|e| e.to_string()) })
                });
                return Ok(Receipt {
                    store,
                    leftover: Leftover::Nothing,
                    pending,
                });
            } else {
                let intent = riders
                    .intent()
                    .map_err(|e| CommitError::Failed(format!("encoding the outbox intent: {e}")))?;
                Leftover::Intent(store.put_intent(intent).await)
            };
            // The batch's writes are done: a cut may come.
            self.open.lock().take();
            store
                .sync()
                .await
                .map_err(|e| CommitError::Failed(e.to_string()))?;
            return Ok(Receipt {
                store,
                leftover,
                pending: None,
            });
        };
        let (fields, settled) = riders.shared_fields();
        txn.ride(fields).await;
        match txn.commit().await {
            Ok(()) => {}
            // Applied after all: go on as committed (redoing would count twice).
            Err(TxnError::Unknown(e)) => {
                let applied = txn.resolve().await;
                metrics::counter!("tocsin_state_commits_unanswered_total",
                    "outcome" => if applied { "applied" } else { "not_applied" })
                .increment(1);
                if !applied {
                    tracing::warn!(error = %e, "a commit Redis did not answer had not applied; the batch is redone");
                    return Err(CommitError::Again(e));
                }
                tracing::info!(
                    "a commit Redis did not answer had applied; the batch goes on as committed"
                );
            }
            Err(e) => return Err(CommitError::Again(e.to_string())),
        }
        Ok(Receipt {
            store,
            leftover: if settled.is_empty() {
                Leftover::Nothing
            } else {
                Leftover::SharedFields(txn.clone(), settled)
            },
            pending: None,
        })
    }
}

/// Keeps reconciliation waiting while a degraded batch runs.
pub(super) type Guard = tokio::sync::OwnedRwLockReadGuard<()>;

/// An undo point for a failed plugin call (see [`BatchScope::checkpoint`]).
pub enum Checkpoint {
    /// Direct writes are the plugin's own: nothing to go back to.
    Direct,
    Shared(redis::Checkpoint),
    Local(overlay::Snapshot),
}

/// [`BatchScope::commit`] of an isolated batch: the intent joins the copy,
/// and the copy is written in one step, or not at all when a key it read
/// changed meanwhile (the batch is then redone).
async fn commit_overlay(
    store: StateStore,
    copy: &Overlay,
    riders: &dyn Riders,
    sync: bool,
) -> Result<Receipt, CommitError> {
    use super::StateOps;
    let leftover = if riders.is_empty() {
        Leftover::Nothing
    } else {
        let intent = riders
            .intent()
            .map_err(|e| CommitError::Failed(format!("encoding the outbox intent: {e}")))?;
        let key = super::intent_key();
        copy.set(&key, intent, None).await;
        Leftover::Intent(key)
    };
    if !copy.commit() {
        metrics::counter!("tocsin_state_commit_conflicts_total").increment(1);
        return Err(CommitError::Again(
            "a key the isolated batch read changed meanwhile".into(),
        ));
    }
    if matches!(leftover, Leftover::Nothing) {
        let pending = sync.then(|| -> Pending {
            let point = store.sync_point();
            Box::pin(async move { point.await.map_err(|e| e.to_string()) })
        });
        return Ok(Receipt {
            store,
            leftover,
            pending,
        });
    }
    store
        .sync()
        .await
        .map_err(|e| CommitError::Failed(e.to_string()))?;
    Ok(Receipt {
        store,
        leftover,
        pending: None,
    })
}
