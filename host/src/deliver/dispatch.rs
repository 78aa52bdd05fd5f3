//! The dispatcher: attempts every pending delivery, each on its own
//! schedule.
//!
//! Deliveries arrive here only after the outbox committed them. Each is
//! retried independently (a failing webhook never resends an email), waits
//! while its target's circuit breaker is open (without spending attempts),
//! and ends delivered or dead (with reason, attempts and last error). On
//! start, every pending row of the outbox is resumed, so a crash loses
//! nothing.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};

use super::breaker::{BreakerConfig, Breakers};
use super::email::SmtpSender;
use super::outbox::{DeliveryRow, Outbox, Status};
use super::retry::Attempt;
use super::{webhook, Delivery};
use crate::event::now_ms;

/// Handle to the dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    outbox: Outbox,
    breakers: Breakers,
    http: reqwest::Client,
    smtp: Option<SmtpSender>,
    /// Due time and id of every scheduled delivery.
    queue: Mutex<BinaryHeap<Reverse<(i64, String)>>>,
    /// The rows being worked on, by id.
    rows: Mutex<HashMap<String, DeliveryRow>>,
    wake: Notify,
    permits: Arc<Semaphore>,
    /// Attempts that may run at once (the permits' total).
    concurrency: usize,
    /// Set by [`Dispatcher::stop`]: no attempt starts any more.
    stopping: std::sync::atomic::AtomicBool,
    /// Told the id of every delivery that reached delivered or dead (the
    /// cluster's shared outbox forgets it).
    settled: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Asked before each attempt whether another instance took the
    /// delivery over (the cluster's fence); such a delivery is not sent.
    fence: std::sync::OnceLock<Fence>,
}

/// Asks whether a delivery (by id) was taken over by another instance.
/// An error answers [`Fenced::Clear`]: sending twice beats not sending.
pub type Fence = Arc<dyn Fn(String) -> futures::future::BoxFuture<'static, Fenced> + Send + Sync>;

/// The fence's answer for one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// Another instance took it over: this one must not send it.
    Taken,
    /// Not taken, and no takeover can happen before this instant: a send
    /// that has not started by then asks again. Why: an instance stopped
    /// (SIGSTOP, a starved machine) between the answer and the send would
    /// otherwise wake up after its deliveries were taken over and send
    /// them too.
    Clear(std::time::Instant),
}

impl Dispatcher {
    /// Starts the scheduling loop.
    pub fn start(
        outbox: Outbox,
        smtp: Option<SmtpSender>,
        breakers: BreakerConfig,
        concurrency: usize,
    ) -> Self {
        let inner = Arc::new(Inner {
            outbox,
            breakers: Breakers::new(breakers),
            http: webhook::client(),
            smtp,
            queue: Mutex::new(BinaryHeap::new()),
            rows: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            concurrency: concurrency.max(1),
            stopping: Default::default(),
            settled: std::sync::OnceLock::new(),
            fence: std::sync::OnceLock::new(),
        });
        let d = Self { inner };
        let looped = d.clone();
        tokio::spawn(async move { looped.run().await });
        d
    }

    /// Resumes every pending delivery of the outbox (after a restart).
    pub async fn resume(&self) -> Result<usize, super::outbox::OutboxError> {
        let rows = self.inner.outbox.pending().await?;
        let n = rows.len();
        if n > 0 {
            tracing::info!(pending = n, "resuming deliveries left pending");
        }
        self.submit(rows);
        Ok(n)
    }

    /// Schedules committed deliveries.
    pub fn submit(&self, rows: Vec<DeliveryRow>) {
        if rows.is_empty() {
            return;
        }
        {
            let mut queue = self.inner.queue.lock();
            let mut map = self.inner.rows.lock();
            for r in rows {
                queue.push(Reverse((r.next_attempt_at, r.id.clone())));
                map.insert(r.id.clone(), r);
            }
        }
        self.inner.wake.notify_one();
    }

    /// Sends the id of every delivery that settles to `tx` (set once).
    pub fn on_settled(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        let _ = self.inner.settled.set(tx);
    }

    /// Sets the fence asked before each attempt (set once).
    pub fn set_fence(&self, fence: Fence) {
        let _ = self.inner.fence.set(fence);
    }

    /// The circuit breakers, for the status API.
    pub fn breakers(&self) -> &Breakers {
        &self.inner.breakers
    }

    /// Deliveries scheduled and not finished.
    pub fn in_flight(&self) -> usize {
        self.inner.rows.lock().len()
    }

    /// Whether email can be sent at all.
    pub fn email_enabled(&self) -> bool {
        self.inner.smtp.is_some()
    }

    /// Starts no attempt any more and waits until those running finished
    /// (their outcome recorded in the outbox), or `deadline`; how many are
    /// still running then. What was not attempted stays pending in the
    /// outbox for the next start; an attempt cut short by the deadline is
    /// made again then, under the same idempotency key.
    pub async fn stop(&self, deadline: std::time::Instant) -> usize {
        use std::sync::atomic::Ordering;
        self.inner.stopping.store(true, Ordering::SeqCst);
        loop {
            let running = self.inner.concurrency - self.inner.permits.available_permits();
            if running == 0 || std::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn run(self) {
        loop {
            if self
                .inner
                .stopping
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return;
            }
            let now = now_ms();
            let mut due = Vec::new();
            let next = {
                let mut queue = self.inner.queue.lock();
                while let Some(Reverse((at, _))) = queue.peek() {
                    if *at > now {
                        break;
                    }
                    if let Some(Reverse((_, id))) = queue.pop() {
                        due.push(id);
                    }
                }
                queue.peek().map(|Reverse((at, _))| *at)
            };
            for id in due {
                let Some(row) = self.inner.rows.lock().get(&id).cloned() else {
                    continue;
                };
                let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                    return;
                };
                if self
                    .inner
                    .stopping
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return;
                }
                let me = self.clone();
                tokio::spawn(async move {
                    me.attempt(row).await;
                    drop(permit);
                });
            }
            let wait = next
                .map(|at| Duration::from_millis((at - now_ms()).clamp(0, 1000) as u64))
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn schedule(&self, id: &str, at: i64) {
        self.inner.queue.lock().push(Reverse((at, id.to_string())));
        self.inner.wake.notify_one();
    }

    /// The fence's answer for `id`: `None` when another instance took the
    /// delivery over, else until when a send may start. Without a cluster,
    /// always clear.
    async fn fence(&self, id: &str) -> Option<std::time::Instant> {
        let Some(fence) = self.inner.fence.get() else {
            return Some(std::time::Instant::now() + Duration::from_secs(3600));
        };
        match fence(id.to_string()).await {
            Fenced::Taken => None,
            Fenced::Clear(until) => Some(until),
        }
    }

    /// Settles a delivery another instance took over, without sending it.
    fn hand_over(&self, mut row: DeliveryRow) {
        tracing::info!(delivery = %row.id, "another instance took this delivery over; not sending it");
        metrics::counter!("tocsin_deliveries_fenced_total").increment(1);
        row.status = Status::HandedOver;
        row.last_error = Some("taken over by another instance".into());
        self.inner.outbox.update(&row);
        self.inner.rows.lock().remove(&row.id);
    }

    async fn attempt(&self, mut row: DeliveryRow) {
        // Before the breaker: a delivery taken over is settled here at
        // once, not deferred with the others while the breaker is open.
        let mut clear_until = match self.fence(&row.id).await {
            Some(until) => until,
            None => return self.hand_over(row),
        };
        if let Err(wait) = self.inner.breakers.allow(&row.target) {
            metrics::counter!("tocsin_deliveries_deferred_total", "kind" => row.kind.clone())
                .increment(1);
            self.schedule(&row.id, now_ms() + wait.as_millis() as i64);
            return;
        }
        // The fence's answer holds only for a while: past it, ask again.
        // Nothing awaits between this check and the send's first step.
        while std::time::Instant::now() >= clear_until {
            metrics::counter!("tocsin_deliveries_refenced_total").increment(1);
            clear_until = match self.fence(&row.id).await {
                Some(until) => until,
                None => return self.hand_over(row),
            };
        }
        let outcome = match &row.payload {
            Delivery::Http(req) => webhook::send(&self.inner.http, &row.id, req).await,
            Delivery::Email(msg) => match &self.inner.smtp {
                Some(smtp) => smtp.send(&row.id, msg).await,
                None => Attempt::Transient("SMTP is not configured ([smtp] host)".into()),
            },
            Delivery::WebSocket { .. } => {
                Attempt::Permanent("websocket frames are not queued".into())
            }
        };
        self.inner
            .breakers
            .record(&row.target, !matches!(outcome, Attempt::Transient(_)));
        row.attempts += 1;
        let now = now_ms();
        let kind = row.kind.clone();
        match outcome {
            Attempt::Delivered => {
                row.status = Status::Delivered;
                row.delivered_at = Some(now);
                row.last_error = None;
                metrics::counter!("tocsin_deliveries_total", "kind" => kind, "result" => "delivered").increment(1);
                metrics::histogram!("tocsin_delivery_latency_seconds")
                    .record((now - row.created_at).max(0) as f64 / 1000.0);
            }
            Attempt::Permanent(e) => {
                tracing::warn!(delivery = %row.id, rule = %row.rule, channel = %row.channel, error = %e, "delivery failed permanently; dead-lettered");
                row.status = Status::Dead;
                row.last_error = Some(e);
                metrics::counter!("tocsin_deliveries_total", "kind" => kind, "result" => "dead")
                    .increment(1);
            }
            Attempt::Transient(e) if row.attempts >= row.policy.attempts => {
                tracing::warn!(delivery = %row.id, rule = %row.rule, channel = %row.channel, attempts = row.attempts, error = %e, "delivery out of attempts; dead-lettered");
                row.status = Status::Dead;
                row.last_error = Some(e);
                metrics::counter!("tocsin_deliveries_total", "kind" => kind, "result" => "dead")
                    .increment(1);
            }
            Attempt::Transient(e) => {
                let delay = row.policy.delay(row.attempts + 1);
                tracing::info!(delivery = %row.id, attempt = row.attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "delivery failed; will retry");
                row.next_attempt_at = now + delay.as_millis() as i64;
                row.last_error = Some(e);
                metrics::counter!("tocsin_deliveries_total", "kind" => kind, "result" => "retry")
                    .increment(1);
            }
        }
        self.inner.outbox.update(&row);
        if row.status == Status::Pending {
            let at = row.next_attempt_at;
            let id = row.id.clone();
            self.inner.rows.lock().insert(id.clone(), row);
            self.schedule(&id, at);
        } else {
            self.inner.rows.lock().remove(&row.id);
            if let Some(tx) = self.inner.settled.get() {
                let _ = tx.send(row.id.clone());
            }
        }
    }
}
