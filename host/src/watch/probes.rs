//! What tocsin looks at in itself, and when each thing is a condition.
//! [`Probes::conditions`] reads every part's own state (nothing here is
//! a second count of what the parts already keep) and returns the
//! conditions true right now; [`super`] turns their changes into events.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::config::WatchConfig;
use crate::deliver::breaker::BreakerState;
use crate::deliver::Deliverer;
use crate::event::Severity;
use crate::pipeline::PipelineHandle;
use crate::source::amqp::backlog::BacklogCell;
use crate::state::StateStore;

use super::SELF_SERVICE;

/// One condition of tocsin: its error code, what it is about (a channel,
/// a target, a rule, a file; none for the engine as a whole), how bad,
/// and what to tell the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub code: &'static str,
    pub subject: Option<String>,
    pub severity: Severity,
    pub message: String,
}

impl Condition {
    fn new(
        code: &'static str,
        subject: Option<String>,
        severity: Severity,
        message: String,
    ) -> Self {
        Self {
            code,
            subject,
            severity,
            message,
        }
    }

    /// The event's service: `tocsin`, or `tocsin/<subject>` (so an alert
    /// and its resolution meet under one key, and a dead self alert is
    /// recognised by its `service` label).
    pub fn service(&self) -> String {
        match &self.subject {
            None => SELF_SERVICE.to_string(),
            Some(s) => format!("{SELF_SERVICE}/{s}"),
        }
    }
}

/// The window over which plugin errors are counted.
const ERROR_WINDOW: Duration = Duration::from_secs(60);

/// Events the latency percentile must be over before it can alert (a
/// handful of slow ones in a quiet minute is not a trend).
const MIN_LATENCY_SAMPLES: u64 = 20;

/// The parts of the engine the watch reads, and nothing else.
pub struct Probes {
    pub config: WatchConfig,
    pub pipeline: PipelineHandle,
    pub deliverer: Deliverer,
    pub state: StateStore,
    pub catalog: Arc<tokio::sync::Mutex<Catalog>>,
    /// With `[amqp] url`: the consumer's backlog, and its queue's name.
    pub amqp: Option<(Arc<BacklogCell>, String)>,
    /// Each rule's plugin error total over the last [`ERROR_WINDOW`].
    errors: HashMap<String, VecDeque<(Instant, u64)>>,
}

impl Probes {
    /// Probes over these parts.
    pub fn new(
        config: WatchConfig,
        pipeline: PipelineHandle,
        deliverer: Deliverer,
        state: StateStore,
        catalog: Arc<tokio::sync::Mutex<Catalog>>,
        amqp: Option<(Arc<BacklogCell>, String)>,
    ) -> Self {
        Self {
            config,
            pipeline,
            deliverer,
            state,
            catalog,
            amqp,
            errors: HashMap::new(),
        }
    }

    /// Every condition true now.
    pub async fn conditions(&mut self) -> Vec<Condition> {
        let mut out = Vec::new();
        self.intake(&mut out);
        self.delivery(&mut out).await;
        if let Some(reason) = self.state.degraded() {
            out.push(Condition::new(
                "TOCSIN_STATE_DEGRADED",
                None,
                Severity::Critical,
                format!(
                    "shared state is degraded: {reason}; counting on local state until it is back"
                ),
            ));
        }
        self.plugins(&mut out);
        self.latency(&mut out);
        self.files(&mut out).await;
        out
    }

    /// The AMQP queue and the pipeline's queue.
    fn intake(&self, out: &mut Vec<Condition>) {
        let c = &self.config;
        if let Some((cell, queue)) = &self.amqp {
            let b = cell.read();
            if let Some(ready) = b.ready.filter(|n| *n > c.amqp_queue_depth) {
                out.push(Condition::new(
                    "TOCSIN_AMQP_BACKLOG",
                    None,
                    Severity::Medium,
                    format!(
                        "{ready} messages wait in RabbitMQ queue {queue} (over {})",
                        c.amqp_queue_depth
                    ),
                ));
            }
            if b.lag_ms > c.amqp_lag_secs.saturating_mul(1000) {
                let paused = if b.paused {
                    " (the consumer is paused)"
                } else {
                    ""
                };
                out.push(Condition::new(
                    "TOCSIN_AMQP_LAG",
                    None,
                    Severity::Critical,
                    format!(
                        "the consumer of {queue} is {} s behind (over {} s){paused}",
                        b.lag_ms / 1000,
                        c.amqp_lag_secs
                    ),
                ));
            }
            if let Some(dead) = b.dead.filter(|n| *n > 0) {
                out.push(Condition::new(
                    "TOCSIN_AMQP_DEAD_LETTERS",
                    None,
                    Severity::High,
                    format!("{dead} messages are dead-lettered in {queue}.dead (see `tocsin dlq`)"),
                ));
            }
        }
        let waiting = self.pipeline.waiting() as u64;
        if waiting > c.queue_depth {
            out.push(Condition::new(
                "TOCSIN_QUEUE_BACKLOG",
                None,
                Severity::High,
                format!(
                    "{waiting} jobs wait in the pipeline's queue (over {})",
                    c.queue_depth
                ),
            ));
        }
    }

    /// The time from acceptance to durable, against its target.
    fn latency(&self, out: &mut Vec<Condition>) {
        let Some((p95, n)) = crate::pipeline::latency::p95() else {
            return;
        };
        metrics::gauge!("tocsin_event_processing_p95_seconds").set(p95 as f64 / 1000.0);
        if n >= MIN_LATENCY_SAMPLES && p95 > self.config.p95_ms {
            out.push(Condition::new(
                "TOCSIN_PROCESSING_SLOW",
                None,
                Severity::Medium,
                format!(
                    "95 % of the last {n} events took up to {p95} ms from acceptance to durable (target {} ms)",
                    self.config.p95_ms
                ),
            ));
        }
    }

    /// Dead deliveries and open circuit breakers.
    async fn delivery(&self, out: &mut Vec<Condition>) {
        match self.deliverer.outbox().dead_by_channel(SELF_SERVICE).await {
            Ok(dead) => {
                for (channel, n) in dead {
                    out.push(Condition::new(
                        "TOCSIN_DELIVERY_DEAD",
                        Some(channel.clone()),
                        Severity::High,
                        format!("{n} deliveries to channel {channel} are dead-lettered (replay them from the dashboard or POST /v1/deliveries/replay)"),
                    ));
                }
            }
            Err(e) => tracing::debug!(error = %e, "watch: reading dead deliveries failed"),
        }
        for b in self.deliverer.dispatcher().breakers().status() {
            if b.state == BreakerState::Closed {
                continue;
            }
            out.push(Condition::new(
                "TOCSIN_BREAKER_OPEN",
                Some(b.target.clone()),
                Severity::High,
                format!(
                    "the circuit breaker of {} is open: {} of its last {} calls failed",
                    b.target, b.errors_in_window, b.calls_in_window
                ),
            ));
        }
    }

    /// Rules whose plugins failed at least `plugin_errors` times in the
    /// last minute.
    fn plugins(&mut self, out: &mut Vec<Condition>) {
        let now = Instant::now();
        for (rule, f) in crate::pipeline::observe::all_failures() {
            let total: u64 = f.by_kind.values().sum();
            // The totals count from the start, as the watch does.
            let seen = self
                .errors
                .entry(rule.clone())
                .or_insert_with(|| VecDeque::from([(now, 0)]));
            seen.push_back((now, total));
            // The newest sample at least a window old is the baseline.
            while seen.len() > 1 && now.duration_since(seen[1].0) >= ERROR_WINDOW {
                seen.pop_front();
            }
            let recent = total.saturating_sub(seen.front().map_or(0, |(_, n)| *n));
            if recent >= self.config.plugin_errors.max(1) {
                let last = crate::plugin::quota::cut(f.last_error.as_deref().unwrap_or(""), 500);
                out.push(Condition::new(
                    "TOCSIN_PLUGIN_FAILING",
                    Some(rule.clone()),
                    Severity::High,
                    format!("rule {rule}: {recent} plugin errors in the last minute; last: {last}"),
                ));
            }
        }
    }

    /// Rule, plugin and policy files the last reload refused.
    async fn files(&self, out: &mut Vec<Condition>) {
        let catalog = self.catalog.lock().await;
        let plugins = catalog
            .plugin_status()
            .into_iter()
            .map(|p| (p.file, p.last_error));
        let rules = catalog
            .rule_status()
            .into_iter()
            .map(|r| (r.file, r.last_error));
        let policies = catalog
            .policy_status()
            .into_iter()
            .map(|p| (p.file, p.last_error));
        for (file, error) in plugins.chain(rules).chain(policies) {
            let Some(error) = error else { continue };
            let name = std::path::Path::new(&file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(file);
            out.push(Condition::new(
                "TOCSIN_RELOAD_REFUSED",
                Some(name),
                Severity::Medium,
                crate::plugin::quota::cut(&error, 1000),
            ));
        }
    }
}
