//! tocsin watches itself: its own conditions become error events of
//! source `self` that go through the ordinary pipeline, so the rules,
//! routing, silences, escalation and channels an operator already has
//! apply to them (`rules/tocsin-self.toml` is the default rule).
//!
//! Every `[watch] interval_ms`, [`probes::Probes`] lists the conditions
//! true now (AMQP backlog and lag, dead letters, the pipeline's queue,
//! dead deliveries, open circuit breakers, degraded state, plugins failing
//! repeatedly, files a reload refused). A condition that appears is sent
//! as an event; one that clears is sent as a resolution of it (same code
//! and service, `resolved`), so its alert ends.
//!
//! Each event's service is `tocsin` or `tocsin/<subject>` (the channel,
//! target, rule or file), so one alert stands for one condition.
//!
//! Guards against loops and floods:
//! - only changes are sent, never the same condition again while it holds;
//! - at most `[watch] events_per_minute` are sent (the rest are dropped and
//!   counted in `tocsin_self_events_dropped_total`; a dropped condition's
//!   resolution is not sent either);
//! - a dead delivery of a self alert (its `service` label `tocsin…`)
//!   raises nothing, so a channel that cannot deliver tocsin's own alerts
//!   does not raise more of them; a breaker is one condition per target
//!   whatever fails through it.
//!
//! What a restart forgets: which conditions were sent. A condition still
//! true is sent again (the default rule's `quiet` period keeps it to one
//! alert per 5 minutes); one that cleared while tocsin was down ends with
//! its rule's `resolve-after`.

pub mod probes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{now_ms, Event, Severity};
use crate::pipeline::PipelineHandle;
use probes::{Condition, Probes};

/// The service of every self event (`tocsin/<subject>` with a subject).
pub const SELF_SERVICE: &str = "tocsin";

/// The source of every self event.
pub const SELF_SOURCE: &str = "self";

/// Starts the watch over `probes`, unless `[watch] enabled` is off.
pub fn start(probes: Probes, pipeline: PipelineHandle) {
    if !probes.config.enabled {
        return;
    }
    tokio::spawn(run(probes, pipeline));
}

/// What the watch sent: conditions by (code, subject), whether each was
/// sent (false: dropped by the rate limit) and at which severity (its
/// resolution has the same, so it is routed where the alert went).
struct Sent {
    conditions: HashMap<(&'static str, Option<String>), (bool, Severity)>,
    budget: Budget,
}

async fn run(mut probes: Probes, pipeline: PipelineHandle) {
    let every = Duration::from_millis(probes.config.interval_ms.max(50));
    let mut sent = Sent {
        conditions: HashMap::new(),
        budget: Budget::new(probes.config.events_per_minute),
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = pipeline.closing() => return,
        }
        let now = probes.conditions().await;
        let events = changes(&mut sent, &now);
        if !events.is_empty() {
            submit(&pipeline, events);
        }
    }
}

/// The events for what changed since the last look: new conditions (as
/// far as the budget goes) and resolutions of sent ones that cleared.
fn changes(sent: &mut Sent, now: &[Condition]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut current = HashMap::new();
    for c in now {
        let key = (c.code, c.subject.clone());
        let was = sent.conditions.remove(&key);
        let ok = match was {
            Some((ok, _)) => ok,
            None if sent.budget.take() => {
                metrics::counter!("tocsin_self_events_total", "code" => c.code, "kind" => "fired")
                    .increment(1);
                tracing::warn!(code = c.code, subject = ?c.subject, message = %c.message, "self condition");
                events.push(event(c, false));
                true
            }
            None => {
                metrics::counter!("tocsin_self_events_dropped_total").increment(1);
                false
            }
        };
        current.insert(key, (ok, c.severity));
    }
    // What is left of the old set cleared.
    for ((code, subject), (ok, severity)) in sent.conditions.drain() {
        if !ok {
            continue;
        }
        metrics::counter!("tocsin_self_events_total", "code" => code, "kind" => "resolved")
            .increment(1);
        tracing::info!(code, subject = ?subject, "self condition cleared");
        let c = Condition {
            code,
            subject,
            severity,
            message: format!("{code} cleared"),
        };
        events.push(event(&c, true));
    }
    sent.conditions = current;
    events
}

/// The self event of `c` (a resolution of it when `resolved`).
fn event(c: &Condition, resolved: bool) -> Event {
    let now = now_ms();
    let mut e = Event::new(
        Arc::from(SELF_SOURCE),
        c.code.to_string(),
        c.severity,
        c.message.clone(),
        c.service(),
        now,
        now,
    );
    if let Some(s) = &c.subject {
        e.metadata.insert("subject".into(), s.clone());
    }
    e.resolved = resolved;
    e
}

/// Queues `events` without holding up the watch (a full queue is one of
/// the conditions it reports).
fn submit(pipeline: &PipelineHandle, events: Vec<Event>) {
    let pipeline = pipeline.clone();
    tokio::spawn(async move {
        match pipeline.submit_tracked(events).await {
            Ok(done) => {
                if let Ok(outcome) = done.await {
                    if let Err(e) = outcome.durable {
                        tracing::warn!(error = %e, "self events not made durable");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "self events not queued"),
        }
    });
}

/// At most `per_minute` events in any minute (a fixed window).
struct Budget {
    per_minute: u32,
    window: Instant,
    used: u32,
}

impl Budget {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window: Instant::now(),
            used: 0,
        }
    }

    fn take(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(60) {
            self.window = Instant::now();
            self.used = 0;
        }
        if self.used >= self.per_minute {
            return false;
        }
        self.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(code: &'static str, subject: &str) -> Condition {
        Condition {
            code,
            subject: Some(subject.to_string()),
            severity: Severity::High,
            message: "m".into(),
        }
    }

    #[test]
    fn only_changes_are_sent_and_a_cleared_condition_resolves() {
        let mut sent = Sent {
            conditions: HashMap::new(),
            budget: Budget::new(10),
        };
        let a = cond("TOCSIN_BREAKER_OPEN", "http://x");
        let first = changes(&mut sent, std::slice::from_ref(&a));
        assert_eq!(first.len(), 1);
        assert!(!first[0].resolved);
        assert_eq!(first[0].service_name, "tocsin/http://x");
        assert!(changes(&mut sent, std::slice::from_ref(&a)).is_empty());
        let gone = changes(&mut sent, &[]);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].resolved);
        assert_eq!(gone[0].error_code, "TOCSIN_BREAKER_OPEN");
        assert_eq!(gone[0].service_name, "tocsin/http://x");
    }

    #[test]
    fn past_the_budget_nothing_is_sent_not_even_its_resolution() {
        let mut sent = Sent {
            conditions: HashMap::new(),
            budget: Budget::new(2),
        };
        let many: Vec<Condition> = (0..5)
            .map(|i| cond("TOCSIN_DELIVERY_DEAD", &format!("c{i}")))
            .collect();
        assert_eq!(changes(&mut sent, &many).len(), 2);
        assert!(changes(&mut sent, &many).is_empty());
        // All clear: only the two sent are resolved.
        let resolved = changes(&mut sent, &[]);
        assert_eq!(resolved.len(), 2);
        assert!(resolved.iter().all(|e| e.resolved));
    }
}
