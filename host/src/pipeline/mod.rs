//! The event pipeline: source → match → aggregate → route → notify →
//! commit → deliver.
//!
//! Sources push accepted events into a bounded queue as jobs. Workers take
//! jobs in batches (one plugin call per rule per batch amortises the cost of
//! entering WebAssembly), and run each stage, one module each:
//! [`matcher`] picks the rules (skipping events a rule already counted),
//! [`aggregate`] turns events into alerts ([`resolve`] turns resolved
//! alerts into resolutions), [`route`] picks channels, [`notify`] renders
//! them and hands deliveries to the delivery stage, and [`commit`] makes
//! the batch durable. Each batch runs on the generation current when it
//! started, so a hot swap never splits a batch between two versions.
//!
//! Durability, in order, for a batch that produced notifications or whose
//! source needs to know (AMQP acks only durable work):
//! 1. the batch's notifications and deliveries are stored as an *intent* in
//!    the state store, after every counter and dedup mark the batch changed;
//! 2. one state sync makes all of it durable at once — the commit point;
//! 3. the outbox records the notifications and deliveries (idempotent ids);
//! 4. the intent is dropped.
//!
//! A crash before 2 loses nothing that was acknowledged (the source
//! redelivers and nothing was counted); after 2, the next start replays the
//! intent into the outbox, so an alert is never lost and never doubled.
//!
//! With shared state (Redis), a batch runs inside a transaction instead
//! ([`crate::state::redis::txn`]): its state changes, dedup marks and outbox
//! entries are committed by one atomic Redis call, the commit point; a
//! batch that loses its locks is redone, so its live WebSocket frames go
//! out only after the commit point. On local state a batch runs once and
//! its frames go out before the commit, for latency.

pub mod aggregate;
pub mod commit;
pub mod matcher;
pub mod notify;
pub mod replay;
pub mod resolve;
pub mod route;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::catalog::{ActiveRule, Generation};
use crate::deliver::{Deliverer, NotificationRow, Outgoing};
use crate::event::{Event, Severity};
use crate::plugin::bindings::Alert;
use crate::plugin::{Instances, Runtime};
use crate::state::{StateOps, StateStore, StateView, Txn};
use crate::trace::{Step, Traces};
use commit::Retry;

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
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    pub workers: usize,
    pub queue: usize,
    /// How long a rule remembers the event ids it counted.
    pub dedup_ttl_ms: u64,
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

/// One worker's plugin instances and delivery handle.
pub struct Worker {
    traces: Traces,
    instances: Instances,
    deliverer: Deliverer,
    state: StateStore,
    generation: u64,
    dedup_ttl_ms: u64,
}

/// What one batch did.
pub struct BatchResult {
    /// Failed events by id, with the error.
    pub failed: HashMap<String, String>,
    /// Durability of what the batch caused.
    pub durable: Result<(), String>,
}

impl Worker {
    /// A worker with no instances yet.
    pub fn new(rt: Runtime, deliverer: Deliverer, traces: Traces, dedup_ttl_ms: u64) -> Self {
        Self {
            traces,
            state: rt.state().clone(),
            instances: Instances::new(rt),
            deliverer,
            generation: 0,
            dedup_ttl_ms,
        }
    }

    /// Processes `jobs` as one batch and reports to each job's owner.
    async fn run(&mut self, g: &Generation, jobs: Vec<Job>) {
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

    /// Runs one batch through every stage on generation `g`. With `sync`,
    /// or when the batch produced notifications, returns only once its
    /// effects are durable (see the module documentation).
    pub async fn process(&mut self, g: &Generation, events: &[Event], sync: bool) -> BatchResult {
        if g.id != self.generation {
            self.instances.retain(|hash| g.has_hash(hash));
            self.generation = g.id;
        }
        let rules = matcher::rules_for(g, events);
        let names: Vec<&str> = rules.iter().map(|r| &*r.name).collect();
        let mut last_error = String::new();
        for _ in 0..COMMIT_ATTEMPTS {
            let scope = match self.state.begin(&names).await {
                Ok(scope) => scope,
                Err(e) => {
                    last_error = e.to_string();
                    break;
                }
            };
            let (view, txn) = (scope.view.clone(), scope.txn.clone());
            let mut batch = self
                .evaluate(g, events, &rules, &view, txn.clone(), None)
                .await;
            if scope.journal {
                replay::journal(&scope.store, events, &batch.counted).await;
            }
            let mut fired: HashMap<String, u64> = HashMap::new();
            for n in &batch.out.notifications {
                *fired.entry(n.rule.clone()).or_default() += 1;
            }
            let durable = commit::run(&scope, &self.deliverer, batch.out, sync).await;
            match durable {
                Err(Retry::Again(e)) => {
                    // Nothing of this attempt reached shared state: redo it.
                    tracing::info!(error = %e, "batch not committed; redoing it");
                    last_error = e;
                    continue;
                }
                Err(Retry::Failed(e)) => {
                    batch.result.durable = Err(e);
                }
                Ok(()) => {
                    // Counted once committed: a redone batch fires once.
                    for (rule, n) in fired {
                        metrics::counter!("tocsin_alerts_total", "rule" => rule).increment(n);
                    }
                }
            }
            if !scope.journal {
                // Degraded: traces would wait on the Redis that is down.
                self.traces.record(batch.steps).await;
            }
            metrics::counter!("tocsin_events_processed_total").increment(events.len() as u64);
            return batch.result;
        }
        // Counted nowhere: every event fails, and the source redelivers.
        let error = format!("shared state: {last_error}");
        BatchResult {
            failed: events
                .iter()
                .map(|e| (e.event_id.clone(), error.clone()))
                .collect(),
            durable: Err(error),
        }
    }

    /// Matches, aggregates, routes and renders one batch through `state`,
    /// collecting (not yet committing) what it produced. `suppress` (the
    /// replay's budget, by alert key) drops that many alerts per key: they
    /// were already notified during an outage.
    async fn evaluate(
        &mut self,
        g: &Generation,
        events: &[Event],
        rules: &[Arc<ActiveRule>],
        state: &StateView,
        txn: Option<Arc<Txn>>,
        mut suppress: Option<&mut HashMap<String, u64>>,
    ) -> Evaluated {
        let mut counted = Vec::new();
        let mut result = BatchResult {
            failed: HashMap::new(),
            durable: Ok(()),
        };
        let mut out = Outgoing::default();
        let mut steps: Vec<(String, Step)> = events
            .iter()
            .map(|e| {
                let mut step = Step::now("received").detail(format!("from {}", e.source));
                step.at = e.received_at;
                (e.event_id.clone(), step)
            })
            .collect();
        for (rule, mut matched) in
            matcher::match_batch(rules, events, state, self.dedup_ttl_ms).await
        {
            for id in &matched.duplicates {
                steps.push((
                    id.clone(),
                    Step::now("duplicate")
                        .rule(&rule.name)
                        .detail("already counted by this rule"),
                ));
            }
            if matched.events.is_empty() && matched.resolutions.is_empty() {
                continue;
            }
            for ev in matched.events.iter().chain(&matched.resolutions) {
                steps.push((ev.event_id.clone(), Step::now("matched").rule(&rule.name)));
            }
            let mut alerts = if matched.events.is_empty() {
                Vec::new()
            } else {
                let checkpoint = match &txn {
                    Some(t) => Some(t.checkpoint().await),
                    None => None,
                };
                match aggregate::run(&mut self.instances, g, &rule, &matched.events, state).await {
                    Ok(alerts) => {
                        for ev in &matched.events {
                            steps.push((
                                ev.event_id.clone(),
                                Step::now("aggregated")
                                    .rule(&rule.name)
                                    .detail(format!("{} alert(s) from this batch", alerts.len())),
                            ));
                        }
                        alerts
                    }
                    Err(e) => {
                        // Undo what the failed call wrote (shared state only),
                        // and forget the dedup marks so a redelivery counts.
                        if let (Some(t), Some(cp)) = (&txn, checkpoint) {
                            t.restore(cp).await;
                        }
                        for id in &matched.marked {
                            state.delete(&crate::state::seen_key(&rule.name, id)).await;
                        }
                        for ev in &matched.events {
                            let error = format!("rule `{}`: {e}", rule.name);
                            steps.push((
                                ev.event_id.clone(),
                                Step::now("failed").rule(&rule.name).detail(error.clone()),
                            ));
                            result.failed.insert(ev.event_id.clone(), error);
                        }
                        if matched.resolutions.is_empty() {
                            continue;
                        }
                        matched.events.clear();
                        Vec::new()
                    }
                }
            };
            for ev in &matched.resolutions {
                steps.push((
                    ev.event_id.clone(),
                    Step::now("resolution")
                        .rule(&rule.name)
                        .detail("a resolved alert: notified, not counted"),
                ));
                alerts.push(resolve::alert(&rule.name, ev));
            }
            counted.push(replay::Counted {
                rule: rule.name.clone(),
                events: matched
                    .events
                    .iter()
                    .chain(&matched.resolutions)
                    .map(|e| e.event_id.clone())
                    .collect(),
                fired: alerts.iter().map(|a| a.key.clone()).collect(),
            });
            for alert in alerts {
                if let Some(budget) = suppress.as_deref_mut() {
                    if let Some(left) = budget.get_mut(&alert.key).filter(|n| **n > 0) {
                        *left -= 1;
                        metrics::counter!("tocsin_replay_suppressed_total").increment(1);
                        continue;
                    }
                }
                let notification_id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
                out.notifications
                    .push(notification_row(&notification_id, &alert));
                let channels = route::run(&mut self.instances, g, &rule, &alert).await;
                let names: Vec<&str> = channels.iter().map(|c| &*c.name).collect();
                let covered = if resolve::is_resolution(&alert) {
                    &matched.resolutions
                } else {
                    &matched.events
                };
                for ev in covered.iter().filter(|ev| alert_covers(&alert, ev)) {
                    steps.push((
                        ev.event_id.clone(),
                        Step::now("notified")
                            .rule(&rule.name)
                            .notification(&notification_id)
                            .detail(format!("{}; channels: {}", alert.title, names.join(", "))),
                    ));
                }
                notify::run(
                    &mut self.instances,
                    g,
                    &rule,
                    &notification_id,
                    &alert,
                    &channels,
                    &self.deliverer,
                    &mut out,
                )
                .await;
            }
        }
        Evaluated {
            result,
            out,
            steps,
            counted,
        }
    }
}

/// How many times a batch is redone when its shared-state commit finds
/// its rule locks lost or Redis failing (it then runs on local state).
const COMMIT_ATTEMPTS: usize = 3;

/// What [`Worker::evaluate`] produced, not yet durable.
struct Evaluated {
    result: BatchResult,
    out: Outgoing,
    steps: Vec<(String, Step)>,
    /// Per rule that counted events: which, and the alert keys fired.
    counted: Vec<replay::Counted>,
}

/// Whether `alert` stands for `event`: its `error-code` and `service`
/// labels (when the aggregator set them) match the event's.
fn alert_covers(alert: &Alert, event: &crate::plugin::bindings::ErrorEvent) -> bool {
    alert.labels.iter().all(|(k, v)| match k.as_str() {
        "error-code" => *v == event.error_code,
        "service" => *v == event.service_name,
        _ => true,
    })
}

/// The history record of an alert.
fn notification_row(id: &Arc<str>, alert: &Alert) -> NotificationRow {
    let severity = Severity::from(alert.severity).as_str();
    let labels: serde_json::Map<String, serde_json::Value> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let alert_json = serde_json::json!({
        "rule": alert.rule, "key": alert.key, "count": alert.count, "severity": severity,
        "title": alert.title, "summary": alert.summary, "samples": alert.samples,
        "labels": labels, "firstSeen": alert.first_seen, "lastSeen": alert.last_seen,
    });
    NotificationRow {
        id: id.to_string(),
        rule: alert.rule.clone(),
        key: alert.key.clone(),
        severity: severity.to_string(),
        title: alert.title.clone(),
        summary: alert.summary.clone(),
        count: alert.count,
        created_at: crate::event::now_ms(),
        alert_json: alert_json.to_string(),
    }
}
