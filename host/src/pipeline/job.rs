//! What a source hands the pipeline ([`Job`]), what it gets back
//! ([`JobOutcome`]), and the count of jobs in flight ([`Intake`]): shared
//! by the queue's workers and the isolated lane, so neither depends on
//! the other for them.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::event::Event;

/// What happened to a tracked job.
#[derive(Debug)]
pub struct JobOutcome {
    /// Events a rule could not count (plugin trap or error), by event id.
    /// Redelivering them is safe: rules that did count them recognise the
    /// event id.
    pub failed: Failures,
    /// Whether everything the job caused is durable; the error otherwise.
    pub durable: Result<(), String>,
}

/// Why an event was not counted: which rules could not count it (the
/// AMQP source dead-letters it with their names, so a replay goes to
/// those rules only, [`crate::source::amqp_dlq`]) and the last error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failure {
    /// The rules that failed on it, with the version that failed
    /// ([`crate::catalog::ActiveRule::version`]). Empty: no rule could
    /// count it (shared state was down), so every rule should see it again.
    pub rules: Vec<(Arc<str>, String)>,
    /// The last error.
    pub error: String,
}

/// Failed events by event id.
pub type Failures = HashMap<String, Failure>;

impl Failure {
    /// Every rule failed on it: nothing was counted.
    pub fn everywhere(error: String) -> Self {
        Self {
            rules: Vec::new(),
            error,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

/// Records that `rule` (at `version`) failed on event `id` with `error`.
pub fn record(failed: &mut Failures, id: &str, rule: &Arc<str>, version: &str, error: &str) {
    let f = failed.entry(id.to_string()).or_default();
    if !f.rules.iter().any(|(r, _)| r == rule) {
        f.rules.push((rule.clone(), version.to_string()));
    }
    f.error = error.to_string();
}

/// Adds `more` (another part of the same batch) to `failed`.
pub fn merge(failed: &mut Failures, more: Failures) {
    for (id, m) in more {
        match failed.get_mut(&id) {
            None => {
                failed.insert(id, m);
            }
            // A part that failed everywhere makes the whole event so.
            Some(f) if f.rules.is_empty() || m.rules.is_empty() => {
                f.rules.clear();
                f.error = m.error;
            }
            Some(f) => {
                for r in m.rules {
                    if !f.rules.iter().any(|(n, _)| *n == r.0) {
                        f.rules.push(r);
                    }
                }
                f.error = m.error;
            }
        }
    }
}

/// Events from a source, and who wants to know when they are durable.
pub struct Job {
    pub events: Vec<Event>,
    pub done: Option<oneshot::Sender<JobOutcome>>,
}

/// Whether the pipeline still takes jobs, and how many it holds: what a
/// graceful shutdown ([`crate::shutdown`]) closes and waits on.
#[derive(Default)]
pub(super) struct Intake {
    pub(super) closed: tokio::sync::watch::Sender<bool>,
    /// Jobs submitted and not finished (queued or in a worker's batch,
    /// or the isolated lane's part of one).
    pub(super) held: AtomicUsize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_every_failing_rule_and_everywhere_wins() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut failed = Failures::new();
        record(&mut failed, "e1", &a, "v1", "first");
        record(&mut failed, "e1", &a, "v1", "again");
        let mut lane = Failures::new();
        record(&mut lane, "e1", &b, "v2", "lane");
        record(&mut lane, "e2", &b, "v2", "lane");
        merge(&mut failed, lane);
        let e1 = &failed["e1"];
        assert_eq!(e1.rules, vec![(a.clone(), "v1".into()), (b, "v2".into())]);
        assert_eq!(e1.error, "lane");
        assert_eq!(failed["e2"].rules.len(), 1);
        let mut down = Failures::new();
        down.insert("e1".into(), Failure::everywhere("state down".into()));
        merge(&mut failed, down);
        assert!(failed["e1"].rules.is_empty(), "no rule counted it");
        assert_eq!(failed["e1"].to_string(), "state down");
    }
}
