//! The pipeline's intake: sources queue [`Job`]s on a bounded channel
//! (backpressure: a full queue makes the source wait), and workers take
//! them in batches of up to [`MAX_BATCH`] events, report each job's
//! outcome to whoever waits on it, and run [`Worker::process`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::job::{Intake, Job, JobOutcome};
use super::{replay, Worker};
use crate::catalog::Generation;
use crate::deliver::Deliverer;
use crate::event::Event;
use crate::plugin::Runtime;
use crate::state::StateStore;
use crate::trace::Traces;

/// Largest batch a worker takes at once (a larger job runs alone).
pub const MAX_BATCH: usize = 512;

/// Handle to push events into the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct PipelineHandle {
    tx: mpsc::Sender<Job>,
    intake: Arc<Intake>,
}

/// Why events could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the pipeline is shutting down")]
    Closed,
}

impl PipelineHandle {
    /// Queues `events`, waiting if the queue is full (backpressure); the
    /// receiver resolves once everything they caused is durable (or
    /// failed). Every source waits for it before it acknowledges.
    pub async fn submit_tracked(
        &self,
        events: Vec<Event>,
    ) -> Result<oneshot::Receiver<JobOutcome>, SubmitError> {
        let (done, rx) = oneshot::channel();
        self.queue(Job {
            events,
            done: Some(done),
        })
        .await?;
        Ok(rx)
    }

    /// Counts `job` as held before looking at `closed`, so that
    /// [`Self::drain`], which closes first and then waits for nothing
    /// held, never misses a job that got in.
    async fn queue(&self, job: Job) -> Result<(), SubmitError> {
        self.intake.held.fetch_add(1, Ordering::SeqCst);
        let sent = if *self.intake.closed.borrow() {
            Err(SubmitError::Closed)
        } else {
            self.tx.send(job).await.map_err(|_| SubmitError::Closed)
        };
        if sent.is_err() {
            self.intake.held.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    /// Jobs queued and not yet taken by a worker (what the
    /// `TOCSIN_QUEUE_BACKLOG` self event watches).
    pub fn waiting(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Whether the pipeline stopped taking jobs (shutting down).
    pub fn is_closed(&self) -> bool {
        *self.intake.closed.borrow()
    }

    /// Resolves once the pipeline stops taking jobs.
    pub async fn closing(&self) {
        let mut rx = self.intake.closed.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Stops taking jobs (submitters get [`SubmitError::Closed`]) and
    /// waits until every job taken is finished, or `deadline`; how many
    /// are still held then.
    pub async fn drain(&self, deadline: Instant) -> usize {
        self.intake.closed.send_replace(true);
        loop {
            let held = self.intake.held.load(Ordering::SeqCst);
            if held == 0 || Instant::now() >= deadline {
                return held;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
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
    /// How often escalation steps and groups are checked ([`super::timers`]).
    pub escalation_tick: std::time::Duration,
    /// Where committed batches are counted for the dashboard.
    pub stats: crate::stats::Stats,
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
    let intake = Arc::new(Intake::default());
    // Each worker holds its own plugin instances.
    let worker = || {
        Worker::new(
            rt.clone(),
            deliverer.clone(),
            traces.clone(),
            config.dedup_ttl_ms,
            config.silences.clone(),
            config.stats.clone(),
        )
    };
    if let StateStore::Redis(redis) = rt.state() {
        replay::install(redis, worker(), generation.clone());
    }
    super::timers::install(worker(), generation.clone(), config.escalation_tick);
    let lane = super::isolate::Lane::start(worker(), generation.clone(), intake.clone());
    for n in 0..config.workers.max(1) {
        let rx = rx.clone();
        let intake = intake.clone();
        let generation = generation.clone();
        let mut worker = worker();
        worker.lane = Some(lane.clone());
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
                        let full = std::mem::take(&mut batch);
                        let n = full.len();
                        worker.run(&generation.load_full(), full).await;
                        intake.held.fetch_sub(n, Ordering::SeqCst);
                        size = 0;
                    }
                    size += job.events.len();
                    batch.push(job);
                }
                if !batch.is_empty() {
                    let n = batch.len();
                    worker.run(&generation.load_full(), batch).await;
                    intake.held.fetch_sub(n, Ordering::SeqCst);
                }
            }
        });
    }
    PipelineHandle { tx, intake }
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
        let skip = super::isolate::isolated_rules(g);
        let handed = match &self.lane {
            Some(lane) if !skip.is_empty() => lane.hand(g, &events, &skip),
            _ => None,
        };
        let lane = super::Lane::Shared { skip: &skip };
        let mut result = self.process(g, &events, tracked, lane).await;
        let report = move |result: super::BatchResult| {
            if result.durable.is_ok() {
                super::latency::record(crate::event::now_ms(), &events);
            }
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
        };
        match (result.pending.take(), handed) {
            (None, None) => report(result),
            // Answered at the commit point, and once the isolated lane is
            // done with its part; the worker goes on meanwhile (the next
            // batches share the same group commit).
            (pending, handed) => {
                tokio::spawn(async move {
                    if let Some(Err(e)) = match pending {
                        Some(p) => Some(p.await),
                        None => None,
                    } {
                        result.durable = Err(e);
                    }
                    if let Some(handed) = handed {
                        let (failed, durable) = (&mut result.failed, &mut result.durable);
                        super::isolate::merge(handed, failed, durable).await;
                    }
                    report(result);
                });
            }
        }
    }
}
