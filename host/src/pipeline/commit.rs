//! Stage 5: commit. Makes a batch's effects durable, in the order the
//! [`super`] module documentation gives, and lets its live frames go out
//! at the right moment: on shared state after the commit point (a batch
//! that lost its locks is redone, and must not have shown its frames), on
//! local state at once (it runs once; only a crash before the commit could
//! repeat them). The only stage that knows which backend the batch is on.

use crate::deliver::{Deliverer, Outgoing};
use crate::state::{BatchScope, StateStore, Txn};

/// Commits the batch `out` on `scope`; with `sync`, also when it produced
/// nothing (the source waits for durability).
pub(super) async fn run(
    scope: &BatchScope,
    deliverer: &Deliverer,
    mut out: Outgoing,
    sync: bool,
) -> Result<(), Retry> {
    let frames = std::mem::take(&mut out.frames);
    match &scope.txn {
        Some(t) => {
            let r = shared(t, &scope.store, deliverer, out).await;
            if r.is_ok() {
                deliverer.publish(frames);
            }
            r
        }
        None => {
            deliverer.publish(frames);
            local(&scope.store, deliverer, out, sync).await
        }
    }
}

/// Why a batch's effects are not durable.
pub enum Retry {
    /// Nothing was committed; the batch can be redone.
    Again(String),
    /// Failed after (or regardless of) the commit point.
    Failed(String),
}

/// Commits a batch's shared-state transaction together with its outbox
/// entries (see [`crate::state::redis::txn`] and [`crate::cluster`]), then records
/// the batch in the local outbox.
pub(super) async fn shared(
    txn: &Txn,
    state: &StateStore,
    deliverer: &Deliverer,
    out: Outgoing,
) -> Result<(), Retry> {
    let StateStore::Redis(redis) = state else {
        return Err(Retry::Failed(
            "a transaction needs the Redis backend".into(),
        ));
    };
    let hash = crate::cluster::outbox_key(redis.instance());
    let fields = crate::cluster::shared_entries(&out);
    let notes = crate::cluster::notification_only(&fields);
    for (field, json) in fields {
        txn.hash_set(&hash, field, json).await;
    }
    match txn.commit().await {
        Ok(()) => {}
        // Applied after all: go on as committed (redoing would count twice).
        Err(crate::state::TxnError::Unknown(e)) => {
            if !txn.resolve().await {
                return Err(Retry::Again(e));
            }
            tracing::info!("a commit Redis did not answer had applied");
        }
        Err(e) => return Err(Retry::Again(e.to_string())),
    }
    deliverer
        .commit(out)
        .await
        .map_err(|e| Retry::Failed(e.to_string()))?;
    if !notes.is_empty() {
        redis.forget_fields(&hash, &notes).await;
    }
    Ok(())
}

/// Makes a batch's effects durable in the order the module documentation gives.
async fn local(
    state: &StateStore,
    deliverer: &Deliverer,
    out: Outgoing,
    sync: bool,
) -> Result<(), Retry> {
    if out.is_empty() {
        return if sync {
            state.sync().await.map_err(|e| Retry::Failed(e.to_string()))
        } else {
            Ok(())
        };
    }
    let intent = serde_json::to_string(&out)
        .map_err(|e| Retry::Failed(format!("encoding the outbox intent: {e}")))?;
    let key = state.put_intent(intent).await;
    state
        .sync()
        .await
        .map_err(|e| Retry::Failed(e.to_string()))?;
    deliverer
        .commit(out)
        .await
        .map_err(|e| Retry::Failed(e.to_string()))?;
    state.drop_intent(&key).await;
    Ok(())
}
