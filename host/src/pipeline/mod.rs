//! The event pipeline: source → match → aggregate → route → deliver.
//!
//! Sources push accepted events into a bounded queue. Workers take them in
//! batches (one plugin call per rule per batch amortises the cost of
//! entering WebAssembly), and run each stage, one module each:
//! [`matcher`] picks the rules, [`aggregate`] turns events into alerts,
//! [`route`] picks channels, and [`notify`] renders and hands deliveries to
//! the delivery stage. Each batch runs on the generation current when it
//! started, so a hot swap never splits a batch between two versions.

pub mod aggregate;
pub mod matcher;
pub mod notify;
pub mod route;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, Mutex};

use crate::catalog::Generation;
use crate::deliver::Deliverer;
use crate::event::Event;
use crate::plugin::{Instances, Runtime};

/// Largest batch a worker takes at once.
pub const MAX_BATCH: usize = 512;

/// Handle to push events into the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct PipelineHandle {
    tx: mpsc::Sender<Vec<Event>>,
}

/// Why events could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the pipeline is shutting down")]
    Closed,
}

impl PipelineHandle {
    /// Queues `events`, waiting if the queue is full (backpressure).
    pub async fn submit(&self, events: Vec<Event>) -> Result<(), SubmitError> {
        if events.is_empty() {
            return Ok(());
        }
        self.tx.send(events).await.map_err(|_| SubmitError::Closed)
    }
}

/// Starts `workers` pipeline workers; returns the submit handle.
pub fn start(
    workers: usize,
    queue: usize,
    generation: Arc<ArcSwap<Generation>>,
    rt: Runtime,
    deliverer: Deliverer,
) -> PipelineHandle {
    let (tx, rx) = mpsc::channel::<Vec<Event>>(queue.max(1));
    let rx = Arc::new(Mutex::new(rx));
    for n in 0..workers.max(1) {
        let rx = rx.clone();
        let generation = generation.clone();
        let mut worker = Worker::new(rt.clone(), deliverer.clone());
        tokio::spawn(async move {
            tracing::debug!(worker = n, "pipeline worker started");
            let mut parts: Vec<Vec<Event>> = Vec::new();
            loop {
                {
                    let mut rx = rx.lock().await;
                    if rx.recv_many(&mut parts, 64).await == 0 {
                        return;
                    }
                }
                let mut batch: Vec<Event> = Vec::new();
                for part in parts.drain(..) {
                    batch.extend(part);
                    if batch.len() >= MAX_BATCH {
                        worker.process(&generation.load_full(), &batch).await;
                        batch.clear();
                    }
                }
                if !batch.is_empty() {
                    worker.process(&generation.load_full(), &batch).await;
                }
            }
        });
    }
    PipelineHandle { tx }
}

/// One worker's plugin instances and delivery handle.
pub struct Worker {
    instances: Instances,
    deliverer: Deliverer,
    generation: u64,
}

impl Worker {
    /// A worker with no instances yet.
    pub fn new(rt: Runtime, deliverer: Deliverer) -> Self {
        Self {
            instances: Instances::new(rt),
            deliverer,
            generation: 0,
        }
    }

    /// Runs one batch through every stage on generation `g`.
    pub async fn process(&mut self, g: &Generation, events: &[Event]) {
        if g.id != self.generation {
            self.instances.retain(|hash| g.has_hash(hash));
            self.generation = g.id;
        }
        for (rule, matched) in matcher::match_batch(g, events) {
            let alerts = aggregate::run(&mut self.instances, g, &rule, &matched).await;
            for alert in alerts {
                let channels = route::run(&mut self.instances, g, &rule, &alert).await;
                notify::run(
                    &mut self.instances,
                    g,
                    &rule,
                    &alert,
                    &channels,
                    &self.deliverer,
                )
                .await;
            }
        }
        metrics::counter!("tocsin_events_processed_total").increment(events.len() as u64);
    }
}
