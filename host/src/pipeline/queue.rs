//! The pipeline's intake: sources queue [`Job`]s on a bounded channel
//! (backpressure: a full queue makes the source wait), and workers take
//! them in batches of up to [`MAX_BATCH`] events, report each job's
//! outcome to whoever waits on it, and run [`Worker::process`].

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{replay, Worker};
use crate::catalog::Generation;
use crate::deliver::Deliverer;
use crate::event::Event;
use crate::plugin::Runtime;
use crate::state::StateStore;
use crate::trace::Traces;

/// Largest batch a worker takes at once (a larger job runs alone).
pub const MAX_BATCH: usize = 512;

/// What happened to a tracked job.
#[derive(Debug)]
pub struct JobOutcome {
    /// Events a rule could not count (plugin trap or error), by event id,
    /// with the last error. Redelivering them is safe: rules that did
    /// count them recognise the event id.
    pub failed: HashMap<String, String>,
    /// Whether everything the job caused is durable; the error otherwise.
    pub durable: Result<(), String>,
}

/// Events from a source, and who wants to know when they are durable.
pub struct Job {
    pub events: Vec<Event>,
    pub done: Option<oneshot::Sender<JobOutcome>>,
}

/// Handle to push events into the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct PipelineHandle {
    tx: mpsc::Sender<Job>,
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
        self.tx
            .send(Job { events, done: None })
            .await
            .map_err(|_| SubmitError::Closed)
    }

    /// Queues `events`; the receiver resolves once everything they caused
    /// is durable (or failed).
    pub async fn submit_tracked(
        &self,
        events: Vec<Event>,
    ) -> Result<oneshot::Receiver<JobOutcome>, SubmitError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job {
                events,
                done: Some(done),
            })
            .await
            .map_err(|_| SubmitError::Closed)?;
        Ok(rx)
    }
}

/// Pipeline settings.
#[derive(Clone)]
pub struct PipelineConfig {
    pub workers: usize,
    pub queue: usize,
    /// How long a rule remembers the event ids it counted.
    pub dedup_ttl_ms: u64,
    /// What mutes alerts before they are routed.
    pub silences: crate::silence::Silences,
}

/// Starts the pipeline workers; returns the submit handle.
pub fn start(
    config: PipelineConfig,
    generation: Arc<ArcSwap<Generation>>,
    rt: Runtime,
    deliverer: Deliverer,
    traces: Traces,
) -> PipelineHandle {
    let (tx, rx) = mpsc::channel::<Job>(config.queue.max(1));
    let rx = Arc::new(Mutex::new(rx));
    if let StateStore::Redis(redis) = rt.state() {
        let worker = Worker::new(
            rt.clone(),
            deliverer.clone(),
            traces.clone(),
            config.dedup_ttl_ms,
            config.silences.clone(),
        );
        replay::install(redis, worker, generation.clone());
    }
    for n in 0..config.workers.max(1) {
        let rx = rx.clone();
        let generation = generation.clone();
        let mut worker = Worker::new(
            rt.clone(),
            deliverer.clone(),
            traces.clone(),
            config.dedup_ttl_ms,
            config.silences.clone(),
        );
        tokio::spawn(async move {
            tracing::debug!(worker = n, "pipeline worker started");
            let mut jobs: Vec<Job> = Vec::new();
            loop {
                {
                    let mut rx = rx.lock().await;
                    if rx.recv_many(&mut jobs, 64).await == 0 {
                        return;
                    }
                }
                let mut batch: Vec<Job> = Vec::new();
                let mut size = 0;
                for job in jobs.drain(..) {
                    if size > 0 && size + job.events.len() > MAX_BATCH {
                        worker
                            .run(&generation.load_full(), std::mem::take(&mut batch))
                            .await;
                        size = 0;
                    }
                    size += job.events.len();
                    batch.push(job);
                }
                if !batch.is_empty() {
                    worker.run(&generation.load_full(), batch).await;
                }
            }
        });
    }
    PipelineHandle { tx }
}

impl Worker {
    /// Processes `jobs` as one batch and reports to each job's owner.
    pub(super) async fn run(&mut self, g: &Generation, jobs: Vec<Job>) {
        let tracked = jobs.iter().any(|j| j.done.is_some());
        let mut events = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
        let mut owners = Vec::with_capacity(jobs.len());
        for job in jobs {
            owners.push((
                job.events
                    .iter()
                    .map(|e| e.event_id.clone())
                    .collect::<Vec<_>>(),
                job.done,
            ));
            events.extend(job.events);
        }
        let result = self.process(g, &events, tracked).await;
        if let Err(e) = &result.durable {
            metrics::counter!("tocsin_outbox_errors_total").increment(1);
            tracing::error!(error = %e, events = events.len(), "could not make a batch's effects durable");
        }
        for (ids, done) in owners {
            let Some(done) = done else { continue };
            let failed = ids
                .iter()
                .filter_map(|id| result.failed.get(id).map(|e| (id.clone(), e.clone())))
                .collect();
            let _ = done.send(JobOutcome {
                failed,
                durable: result.durable.clone(),
            });
        }
    }
}
