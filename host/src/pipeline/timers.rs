//! What the pipeline does on time rather than on events: escalation steps
//! ([`super::escalate`]) and group notifications ([`super::group`]). One
//! loop per instance, with a worker (its own plugin instances) of its own,
//! looks every [`PipelineConfig::escalation_tick`](super::PipelineConfig)
//! for what is due; each due thing runs as a batch that re-reads and
//! commits under its rule's scope, so instances looking at the same time
//! fire it once.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::Worker;
use crate::catalog::Generation;

/// Starts the loop with `worker`, every `tick`.
pub fn install(mut worker: Worker, generation: Arc<ArcSwap<Generation>>, tick: Duration) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let g = generation.load_full();
            worker.escalate_due(&g).await;
            worker.flush_groups(&g).await;
        }
    });
}
