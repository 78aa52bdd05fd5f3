//! Stage 5: commit. Makes a batch's effects durable at one commit point,
//! in the order the [`super`] module documentation gives, then enters the
//! delivery stage once: live frames, the outbox, the dispatcher.
//!
//! Which backend the batch is on is the scope's business
//! ([`crate::state::scope`]): the outbox's records ride the state commit
//! (an intent locally, shared-outbox fields on Redis), so this stage reads
//! the same for both. Frames go out only after the commit point, so a
//! batch that is redone (a lost lock) or redelivered (a crash before the
//! commit) never showed its alerts twice.

use crate::deliver::{Deliverer, Outgoing};
use crate::state::{BatchScope, CommitError, Pending};

/// Commits the batch `out` on `scope`. With `sync` (the source
/// acknowledges only durable work) a batch that delivers nothing may not
/// have reached its commit point yet: then the [`Pending`] to await
/// before acknowledging, so the worker goes on meanwhile.
pub(super) async fn run(
    scope: &BatchScope,
    deliverer: &Deliverer,
    out: Outgoing,
    sync: bool,
) -> Result<Option<Pending>, CommitError> {
    let receipt = scope.commit(&out, sync).await?;
    deliverer
        .deliver(out)
        .await
        .map_err(|e| CommitError::Failed(e.to_string()))?;
    Ok(receipt.finish().await)
}
