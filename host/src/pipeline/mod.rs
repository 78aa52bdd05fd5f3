//! The event pipeline: source → match → aggregate → route → notify →
//! commit → deliver.
//!
//! Sources push accepted events into a bounded queue as jobs ([`queue`]).
//! Workers take jobs in batches (one plugin call per rule per batch
//! amortises the cost of entering WebAssembly) and run
//! [`Worker::evaluate`], which reads as the list of stages, one module
//! each, for every rule that takes events:
//! 1. [`matcher`] picks the rules and their events, skipping what a rule
//!    already counted ([`dedup`]);
//! 2. [`aggregate`] turns events into alerts inside an undo point
//!    ([`aggregate::guarded`]), and [`resolve`] turns resolved alerts into
//!    resolutions;
//!    Every alert is recorded as active, and every resolution ends one
//!    ([`active`]); an alert an active silence mutes ([`silence`]), or
//!    that an active alert inhibits ([`inhibit`]), stops here: recorded,
//!    not notified;
//! 3. [`route`] picks channels;
//! 4. [`notify`] renders them into the batch's outgoing deliveries;
//! 5. [`commit`] makes the batch durable, then enters the delivery stage
//!    ([`crate::deliver`]) once.
//!
//! A rule with a `[group]` table adds its alerts to groups at stage 3
//! instead ([`group`]). Escalation steps ([`escalate`]) and group
//! notifications run as batches of their own, on time rather than on
//! events ([`timers`]), through the same notify and commit stages.
//!
//! Tracing is a wrapper: stages report to the batch's [`trail`] in one
//! line each; every plugin call is measured by [`observe`]. Each batch
//! runs on the generation current when it started, so a hot swap never
//! splits a batch between two versions.
//!
//! Durability, in order, for a batch that produced notifications or whose
//! source needs to know (AMQP acks only durable work):
//! 1. the batch's notifications and deliveries ride its state commit
//!    ([`crate::state::scope`]): on local state as an *intent* synced with
//!    every counter and dedup mark the batch changed; on Redis as
//!    shared-outbox fields in the transaction's one atomic call — the
//!    commit point;
//! 2. the delivery stage publishes the live frames, records the
//!    notifications and deliveries in the outbox (idempotent ids) and
//!    hands the deliveries to the dispatcher;
//! 3. the intent is dropped.
//!
//! A crash before 1 loses nothing that was acknowledged (the source
//! redelivers and nothing was counted); after 1, the next start replays the
//! intent into the outbox, so an alert is never lost and never doubled. A
//! batch on Redis that loses its locks is redone; as frames go out only
//! after the commit point, no batch shows its alerts twice.

pub mod active;
pub mod aggregate;
pub mod commit;
pub mod dedup;
pub mod escalate;
pub mod group;
pub mod inhibit;
pub mod isolate;
pub mod job;
pub mod latency;
pub mod matcher;
pub mod notify;
pub mod observe;
pub mod queue;
pub mod replay;
pub mod resolve;
pub mod route;
pub mod silence;
pub mod timers;
pub mod trail;

pub use job::{Failure, Failures, Job, JobOutcome};
pub use queue::{start, PipelineConfig, PipelineHandle, SubmitError, MAX_BATCH};

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::{ActiveRule, ChannelBinding, Generation};
use crate::deliver::{Deliverer, Outgoing};
use crate::event::Event;
use crate::plugin::bindings::Alert;
use crate::plugin::{Instances, Runtime};
use crate::silence::Silences;
use crate::state::{BatchScope, CommitError, StateStore};
use crate::trace::{Step, Traces};
use trail::Trail;

/// One worker's plugin instances and delivery handle.
pub struct Worker {
    traces: Traces,
    instances: Instances,
    deliverer: Deliverer,
    state: StateStore,
    generation: u64,
    dedup_ttl_ms: u64,
    silences: Silences,
    stats: crate::stats::Stats,
    /// Where events of isolated rules go ([`isolate`]); `None` on the
    /// lane's own worker and the timers'.
    pub(super) lane: Option<isolate::Lane>,
}

/// Which of a batch's rules a worker runs: the shared workers leave the
/// isolated rules out (handed to the lane), the lane runs only those.
#[derive(Clone, Copy)]
pub enum Lane<'a> {
    Shared { skip: &'a [String] },
    Isolated(&'a [&'a str]),
}

/// What one batch did.
pub struct BatchResult {
    /// Failed events by id, with the rules and the error.
    pub failed: Failures,
    /// Durability of what the batch caused.
    pub durable: Result<(), String>,
    /// The commit point, when it is still to come (see [`commit::run`]):
    /// `durable` holds only once it resolved.
    pub pending: Option<crate::state::Pending>,
}

impl Worker {
    /// A worker with no instances yet.
    pub fn new(
        rt: Runtime,
        deliverer: Deliverer,
        traces: Traces,
        dedup_ttl_ms: u64,
        silences: Silences,
        stats: crate::stats::Stats,
    ) -> Self {
        Self {
            traces,
            state: rt.state().clone(),
            instances: Instances::new(rt),
            deliverer,
            generation: 0,
            dedup_ttl_ms,
            silences,
            stats,
            lane: None,
        }
    }

    /// Runs one batch through every stage on generation `g`. With `sync`,
    /// or when the batch produced notifications, returns only once its
    /// effects are durable (see the module documentation); `lane` says
    /// which rules run here.
    pub async fn process(
        &mut self,
        g: &Generation,
        events: &[Event],
        sync: bool,
        lane: Lane<'_>,
    ) -> BatchResult {
        self.on_generation(g);
        let mut rules = matcher::rules_for(g, events);
        rules.retain(|r| match lane {
            Lane::Shared { skip } => !skip.iter().any(|s| **s == *r.name),
            Lane::Isolated(only) => only.contains(&&*r.name),
        });
        let isolated = matches!(lane, Lane::Isolated(_));
        let names: Vec<&str> = rules.iter().map(|r| &*r.name).collect();
        let mut last_error = String::new();
        for _ in 0..COMMIT_ATTEMPTS {
            let begun = if isolated {
                self.state.begin_isolated(&names).await
            } else {
                self.state.begin(&names).await
            };
            let scope = match begun {
                Ok(scope) => scope,
                Err(e) => {
                    last_error = e.to_string();
                    break;
                }
            };
            let mut batch = self.evaluate(g, events, &rules, &scope, None).await;
            if isolated {
                // The shared worker's trail has the arrival already.
                batch.trail.drop_received();
            }
            if scope.journal {
                replay::journal(scope.store(), events, &batch.counted).await;
            }
            let mut fired: HashMap<String, u64> = HashMap::new();
            for n in &batch.out.notifications {
                *fired.entry(n.rule.clone()).or_default() += 1;
            }
            let alerts = self.stats.fold_alerts(&batch.out.notifications);
            let durable = commit::run(&scope, &self.deliverer, batch.out, sync).await;
            match durable {
                Err(CommitError::Again(e)) => {
                    // Nothing of this attempt reached shared state: redo it.
                    tracing::info!(error = %e, "batch not committed; redoing it");
                    last_error = e;
                    continue;
                }
                Err(CommitError::Failed(e)) => {
                    batch.result.durable = Err(e);
                }
                Ok(pending) => {
                    batch.result.pending = pending;
                    // Counted once committed: a redone batch fires once.
                    for (rule, n) in fired {
                        metrics::counter!("tocsin_alerts_total", "rule" => rule).increment(n);
                    }
                    self.stats.record_alerts(alerts);
                    let taken = batch
                        .counted
                        .iter()
                        .map(|c| (&*c.rule, c.events.len() as u64));
                    self.stats.record_rules(crate::event::now_ms(), taken);
                    if !isolated {
                        self.stats.record_events(events);
                    }
                }
            }
            if !scope.journal {
                // Degraded: traces would wait on the Redis that is down.
                self.traces.record(batch.trail.into_steps()).await;
            }
            if !isolated {
                metrics::counter!("tocsin_events_processed_total").increment(events.len() as u64);
            }
            return batch.result;
        }
        // Counted nowhere: every event fails, and the source redelivers.
        let error = format!("shared state: {last_error}");
        BatchResult {
            failed: events
                .iter()
                .map(|e| (e.event_id.clone(), Failure::everywhere(error.clone())))
                .collect(),
            durable: Err(error),
            pending: None,
        }
    }

    /// Drops the instances of plugin versions `g` no longer has.
    fn on_generation(&mut self, g: &Generation) {
        if g.id != self.generation {
            self.instances.retain(|hash| g.has_hash(hash));
            self.generation = g.id;
        }
    }

    /// Matches, aggregates, routes and renders one batch in `scope`,
    /// collecting (not yet committing) what it produced: the stages, in
    /// order, for each rule that takes events. `suppress` (the replay's
    /// budget, by alert key) drops that many alerts per key: they were
    /// already notified during an outage.
    async fn evaluate(
        &mut self,
        g: &Generation,
        events: &[Event],
        rules: &[Arc<ActiveRule>],
        scope: &BatchScope,
        mut suppress: Option<&mut HashMap<String, u64>>,
    ) -> Evaluated {
        let mut batch = Evaluated::new(events);
        let view = &scope.view;
        // Stages 1–2 for every rule first, so inhibition (stage 2½) sees
        // every alert the batch fired, whichever rule fired it.
        let mut fired = Vec::new();
        for (rule, matched) in matcher::match_batch(rules, events, view, self.dedup_ttl_ms).await {
            batch.trail_matched(&rule, &matched);
            let aggregated = self.aggregate(g, &rule, &matched, scope, &mut batch).await;
            let counted = aggregated.is_some();
            let mut alerts = aggregated.unwrap_or_default();
            alerts.extend(resolve::run(&rule.name, &matched.resolutions));
            let acked = active::run(view, &rule, &mut alerts).await;
            batch.counted(&rule, &matched, counted, &alerts);
            if let Some(budget) = suppress.as_deref_mut() {
                replay::suppress(budget, &mut alerts);
            }
            fired.push((rule, matched, alerts, acked));
        }
        let alerts = fired.iter().map(|(r, _, a, _)| (&*r.name, a.as_slice()));
        let mut inhibitor = inhibit::Inhibitor::new(&g.inhibitions, &self.state, alerts);
        for (rule, matched, alerts, acked) in &fired {
            for alert in alerts {
                let ack = acked.get(&alert.key);
                let why = match silence::muted(&self.silences, rule, &g.intervals, alert, ack) {
                    Some(m) => Some(m),
                    None => inhibitor.muted(&rule.name, alert).await,
                };
                if let Some(m) = why {
                    batch.muted(rule, matched, alert, &m);
                    continue;
                }
                if let Some(grouping) = &rule.group {
                    if let Some(key) = group::add(view, rule, grouping, alert).await {
                        let step = Step::now("grouped")
                            .rule(&rule.name)
                            .detail(format!("{}; in group {key}", alert.title));
                        batch.trail.events(covered(matched, alert), step);
                    }
                    continue;
                }
                let id = batch.notification(matched, alert);
                let channels = route::run(&mut self.instances, g, rule, alert).await;
                let (channels, off) = route::scheduled(g, rule, channels, crate::event::now_ms());
                batch.trail_notified(rule, matched, alert, &id, &channels, &off);
                notify::run(
                    &mut self.instances,
                    g,
                    rule,
                    &id,
                    alert,
                    &channels,
                    &mut batch.out,
                )
                .await;
            }
        }
        batch
    }

    /// Stage 2 for one rule: its aggregator's alerts; `None` when it failed
    /// (its events are then reported failed, and a redelivery counts them).
    async fn aggregate(
        &mut self,
        g: &Generation,
        rule: &ActiveRule,
        matched: &matcher::Matched,
        scope: &BatchScope,
        batch: &mut Evaluated,
    ) -> Option<Vec<Alert>> {
        if matched.events.is_empty() {
            return Some(Vec::new());
        }
        match aggregate::guarded(&mut self.instances, g, rule, matched, scope).await {
            Ok(alerts) => {
                let detail = format!("{} alert(s) from this batch", alerts.len());
                let step = Step::now("aggregated").rule(&rule.name).detail(detail);
                batch.trail.events(&matched.events, step);
                Some(alerts)
            }
            Err(e) => {
                let error = format!("rule `{}`: {e}", rule.name);
                let step = Step::now("failed").rule(&rule.name).detail(error.clone());
                batch.trail.events(&matched.events, step);
                let version = rule.version();
                for ev in &matched.events {
                    let failed = &mut batch.result.failed;
                    job::record(failed, &ev.event_id, &rule.name, &version, &error);
                }
                None
            }
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
    trail: Trail,
    /// Per rule that counted events: which, and the alert keys fired.
    counted: Vec<replay::Counted>,
}

impl Evaluated {
    fn new(events: &[Event]) -> Self {
        Self {
            result: BatchResult {
                failed: Failures::new(),
                durable: Ok(()),
                pending: None,
            },
            out: Outgoing::default(),
            trail: Trail::received(events),
            counted: Vec::new(),
        }
    }

    /// Trail of stage 1 for `rule`.
    fn trail_matched(&mut self, rule: &ActiveRule, matched: &matcher::Matched) {
        let step = Step::now("duplicate")
            .rule(&rule.name)
            .detail("already counted by this rule");
        self.trail.ids(&matched.duplicates, step);
        let taken = matched.events.iter().chain(&matched.resolutions);
        self.trail
            .events(taken, Step::now("matched").rule(&rule.name));
        let step = Step::now("resolution")
            .rule(&rule.name)
            .detail("a resolved alert: notified, not counted");
        self.trail.events(&matched.resolutions, step);
    }

    /// Notes what `rule` counted (for the degraded journal and the replay):
    /// its events (unless its aggregator failed on them, `aggregated`
    /// false), its resolutions, and the keys of `alerts`.
    fn counted(
        &mut self,
        rule: &ActiveRule,
        matched: &matcher::Matched,
        aggregated: bool,
        alerts: &[Alert],
    ) {
        let errors = matched.events.iter().filter(|_| aggregated);
        let events: Vec<String> = errors
            .chain(&matched.resolutions)
            .map(|e| e.event_id.clone())
            .collect();
        if events.is_empty() {
            return;
        }
        self.counted.push(replay::Counted {
            rule: rule.name.clone(),
            events,
            fired: alerts.iter().map(|a| a.key.clone()).collect(),
        });
    }

    /// Records `alert` in the batch's history; its notification id.
    fn notification(&mut self, matched: &matcher::Matched, alert: &Alert) -> Arc<str> {
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
        let events = notify::samples(matched, alert);
        self.out
            .notifications
            .push(notify::row(&id, alert, None, events));
        id
    }

    /// Records `alert`, muted by the silences `by`: in the history (with
    /// `silencedBy`), the trail and the metrics; nothing is delivered.
    fn muted(
        &mut self,
        rule: &ActiveRule,
        matched: &matcher::Matched,
        alert: &Alert,
        why: &silence::Muted,
    ) {
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
        self.out.notifications.push(notify::row(
            &id,
            alert,
            Some(why),
            notify::samples(matched, alert),
        ));
        let (stage, metric) = why.stage();
        metrics::counter!(metric, "rule" => rule.name.to_string()).increment(1);
        let step = Step::now(stage)
            .rule(&rule.name)
            .notification(&id)
            .detail(format!("{}; {}", alert.title, why.detail()));
        self.trail.events(covered(matched, alert), step);
    }

    /// Trail of stages 3 and 4: the events `alert` stands for were notified.
    fn trail_notified(
        &mut self,
        rule: &ActiveRule,
        matched: &matcher::Matched,
        alert: &Alert,
        id: &str,
        channels: &[ChannelBinding],
        muted: &[String],
    ) {
        let names: Vec<&str> = channels.iter().map(|c| &*c.name).collect();
        let mut detail = format!("{}; channels: {}", alert.title, names.join(", "));
        if !muted.is_empty() {
            detail.push_str(&format!("; muted: {}", muted.join(", ")));
        }
        let step = Step::now("notified")
            .rule(&rule.name)
            .notification(id)
            .detail(detail);
        self.trail.events(covered(matched, alert), step);
    }
}

/// The events of `matched` that `alert` stands for (its resolutions, for
/// a resolution).
fn covered<'a>(
    matched: &'a matcher::Matched,
    alert: &'a Alert,
) -> impl Iterator<Item = &'a crate::plugin::bindings::ErrorEvent> {
    let events = if resolve::is_resolution(alert) {
        &matched.resolutions
    } else {
        &matched.events
    };
    events.iter().filter(move |ev| alert_covers(alert, ev))
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
