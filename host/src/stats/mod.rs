//! The dashboard's numbers: events and alerts per minute, by error code,
//! service and rule, and each service's last error ([`bucket`]), kept in
//! the state backend ([`store`]: minute buckets for 25 h, hour buckets for
//! 8 days; on Redis shared by every instance) and read by `/v1/stats`
//! ([`report`]).
//!
//! Off the hot path: a worker adds a committed batch into this instance's
//! pending buckets (one short lock per batch, the batch's events already
//! folded by code and service), and a background task adds those into the
//! store every `[engine] stats_flush_ms`. A flush that fails (Redis
//! unreachable) keeps its counts for the next one. What a kill takes is
//! at most one flush interval of counts: trends, never alerting, depend
//! on them. `[engine] stats = false` turns it all off.

pub mod bucket;
pub mod report;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::deliver::NotificationRow;
use crate::event::Event;
use crate::state::StateStore;
use bucket::{Bucket, By, LastError, What};
use store::Step;

/// Pending minutes an instance keeps while its flushes fail (Redis down):
/// past that, the oldest minutes are dropped (`tocsin_stats_dropped_total`).
const MAX_PENDING_MINUTES: usize = 24 * 60;

/// This instance's counters and the store they go to. Cheap to clone.
#[derive(Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

struct Inner {
    store: StateStore,
    enabled: bool,
    /// Counted, not yet flushed: by minute start.
    pending: Mutex<BTreeMap<i64, Bucket>>,
    /// Serialises flushes (the timer's and shutdown's).
    flushing: tokio::sync::Mutex<()>,
    /// Reports built in the last [`REPORT_FRESH`], by range: many open
    /// pages cost one read of the store.
    reports: Mutex<HashMap<report::Range, (Instant, Arc<serde_json::Value>)>>,
}

/// How long a built report is served again.
const REPORT_FRESH: Duration = Duration::from_secs(1);

impl Stats {
    /// Counters over `store`; nothing is counted unless `enabled`.
    pub fn new(store: StateStore, enabled: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                enabled,
                pending: Mutex::new(BTreeMap::new()),
                flushing: tokio::sync::Mutex::new(()),
                reports: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether counting is on (`[engine] stats`).
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Starts the background flush every `every`.
    pub fn start(&self, every: Duration) {
        if !self.inner.enabled {
            return;
        }
        let stats = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                stats.flush().await;
            }
        });
    }

    /// Counts a committed batch's events, by the minute they arrived.
    pub fn record_events(&self, events: &[Event]) {
        if !self.inner.enabled || events.is_empty() {
            return;
        }
        // Folded first, so the lock is held for a few adds, not one per event.
        let mut folded: HashMap<(i64, &str, &str), (u64, &Event)> = HashMap::new();
        for e in events {
            let minute = Step::Minute.start(e.received_at);
            let slot = folded
                .entry((minute, e.error_code.as_str(), e.service_name.as_str()))
                .or_insert((0, e));
            slot.0 += 1;
            if e.received_at >= slot.1.received_at {
                slot.1 = e;
            }
        }
        let mut pending = self.inner.pending.lock();
        for ((minute, code, service), (n, last)) in folded {
            let b = pending.entry(minute).or_default();
            b.add(What::Events, &[(By::Code, code), (By::Service, service)], n);
            b.note_last(
                service,
                LastError {
                    at: last.received_at,
                    code: code.to_string(),
                    message: last.message.clone(),
                },
            );
        }
        trim(&mut pending);
    }

    /// Counts, per rule, the events it took in a committed batch (an
    /// event two rules took counts once in the total, once per rule).
    pub fn record_rules<'a>(&self, at: i64, taken: impl IntoIterator<Item = (&'a str, u64)>) {
        if !self.inner.enabled {
            return;
        }
        let minute = Step::Minute.start(at);
        let mut pending = self.inner.pending.lock();
        let b = pending.entry(minute).or_default();
        for (rule, n) in taken {
            b.add_by(What::Events, &[(By::Rule, rule)], n);
        }
        trim(&mut pending);
    }

    /// A batch's notifications (alerts) counted by rule, and by the error
    /// code and service their labels name, before the batch commits (so no
    /// copy of them outlives the commit); [`Self::record_alerts`] adds them
    /// once it did.
    pub fn fold_alerts(&self, rows: &[NotificationRow]) -> Alerts {
        let mut folded = BTreeMap::new();
        if !self.inner.enabled {
            return Alerts(folded);
        }
        for n in rows {
            let labels: serde_json::Value = serde_json::from_str(&n.alert_json).unwrap_or_default();
            let label = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|k| labels["labels"][k].as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let code = label(&["error-code", "alertname", "errorCode"]);
            let service = label(&["service", "serviceName"]);
            let mut by = vec![(By::Rule, n.rule.as_str())];
            if !code.is_empty() {
                by.push((By::Code, code.as_str()));
            }
            if !service.is_empty() {
                by.push((By::Service, service.as_str()));
            }
            folded
                .entry(Step::Minute.start(n.created_at))
                .or_insert_with(Bucket::default)
                .add(What::Alerts, &by, 1);
        }
        Alerts(folded)
    }

    /// Counts a committed batch's alerts ([`Self::fold_alerts`]).
    pub fn record_alerts(&self, alerts: Alerts) {
        if alerts.0.is_empty() {
            return;
        }
        let mut pending = self.inner.pending.lock();
        for (minute, b) in alerts.0 {
            pending.entry(minute).or_default().merge(&b);
        }
        trim(&mut pending);
    }

    /// Adds the pending counts into the store; what fails stays pending.
    pub async fn flush(&self) {
        let _one = self.inner.flushing.lock().await;
        let taken = std::mem::take(&mut *self.inner.pending.lock());
        if taken.is_empty() {
            return;
        }
        // Minutes first, then the hours of the minutes stored: a minute
        // that failed stays pending whole, so nothing is counted twice.
        let mut hours: BTreeMap<i64, Bucket> = BTreeMap::new();
        let mut left = taken.into_iter();
        while let Some((minute, b)) = left.next() {
            if let Err(e) = store::add(&self.inner.store, Step::Minute, minute, &b).await {
                metrics::counter!("tocsin_stats_flush_errors_total").increment(1);
                tracing::debug!(error = %e, "stats flush failed; kept for the next one");
                let mut pending = self.inner.pending.lock();
                for (m, b) in std::iter::once((minute, b)).chain(left.by_ref()) {
                    pending.entry(m).or_default().merge(&b);
                }
                trim(&mut pending);
                break;
            }
            hours.entry(Step::Hour.start(minute)).or_default().merge(&b);
        }
        for (hour, b) in &hours {
            if let Err(e) = store::add(&self.inner.store, Step::Hour, *hour, b).await {
                // The minutes are stored; only the 7-day view misses these.
                metrics::counter!("tocsin_stats_flush_errors_total").increment(1);
                tracing::debug!(error = %e, "stats flush of an hour bucket failed");
            }
        }
    }

    /// The report of `range` ([`report`]), at most [`REPORT_FRESH`] old.
    pub async fn report(&self, range: report::Range) -> Result<Arc<serde_json::Value>, String> {
        if let Some((at, r)) = self.inner.reports.lock().get(&range) {
            if at.elapsed() < REPORT_FRESH {
                return Ok(r.clone());
            }
        }
        let r = Arc::new(report::build(self, range, crate::event::now_ms()).await?);
        self.inner
            .reports
            .lock()
            .insert(range, (Instant::now(), r.clone()));
        Ok(r)
    }

    /// The stored buckets of `step` starting at `starts`, with what this
    /// instance has not flushed yet added in (so its own page is live).
    pub async fn buckets(&self, step: Step, starts: &[i64]) -> Result<Vec<Bucket>, String> {
        let mut out = store::read(&self.inner.store, step, starts).await?;
        let pending = self.inner.pending.lock();
        for (minute, b) in pending.iter() {
            let start = step.start(*minute);
            if let Ok(i) = starts.binary_search(&start) {
                out[i].merge(b);
            }
        }
        Ok(out)
    }
}

/// A batch's alerts, counted by minute, not yet recorded.
pub struct Alerts(BTreeMap<i64, Bucket>);

/// Drops the oldest pending minutes past [`MAX_PENDING_MINUTES`].
fn trim(pending: &mut BTreeMap<i64, Bucket>) {
    while pending.len() > MAX_PENDING_MINUTES {
        if pending.pop_first().is_some() {
            metrics::counter!("tocsin_stats_dropped_total").increment(1);
        }
    }
}
