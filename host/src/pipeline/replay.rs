//! Replaying what degraded batches counted onto the shared state.
//!
//! Why: while Redis is unreachable each instance counts alone, on local
//! state, so a key whose events are spread over instances may reach its
//! threshold on none of them. Adding the local counts to Redis afterwards
//! is not enough: nothing would check the threshold until the key's next
//! event, which may never come — an alert lost. So a degraded batch writes
//! a journal entry on local state ([`journal`]): per rule, the events it
//! counted and the keys of the alerts it fired. When Redis answers again,
//! reconciliation ([`crate::state::redis`]) hands the journal to [`run`],
//! which counts the events again, in order, on the shared state, through
//! the rule's own plugin, in ordinary batch transactions: every threshold
//! is checked as it is crossed, and the alerts are routed, rendered and
//! delivered like any other.
//!
//! An alert the replay produces for a key that already alerted locally
//! during the outage is suppressed, once per local alert (the *budget*,
//! kept in Redis and updated in the same commit as the replayed counts, so
//! a crash mid-replay neither repeats nor forgets a suppression). For
//! counting rules such as `threshold` the cluster then fires exactly as
//! many alerts per key as it would have without the outage; alerts fire
//! late, not never. Replayed events carry their ids and are marked as
//! counted, so a replay that is interrupted and redone counts nothing
//! twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::commit;
use super::{Worker, COMMIT_ATTEMPTS};
use crate::catalog::{ActiveRule, Generation};
use crate::event::Event;
use crate::plugin::bindings::Alert;
use crate::state::{journal_key, BatchScope, CommitError, RedisState, StateOps, StateStore};

/// How long a replay budget outlives its reconciliation (it is deleted at
/// the end; this only bounds a leftover).
const BUDGET_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// What one rule did in a batch: the events it counted and the keys of
/// the alerts it fired.
pub struct Counted {
    pub rule: Arc<str>,
    pub events: Vec<String>,
    pub fired: Vec<String>,
}

/// One journal entry: a degraded batch.
#[derive(Serialize, Deserialize)]
struct Entry {
    rules: Vec<RuleEntry>,
}

#[derive(Serialize, Deserialize)]
struct RuleEntry {
    rule: String,
    events: Vec<Event>,
    fired: Vec<String>,
}

/// Alerts still to suppress for one rule, by alert key, and the journal
/// entries already accounted in it.
#[derive(Default, Serialize, Deserialize)]
struct Budget {
    entries: BTreeSet<String>,
    left: HashMap<String, u64>,
}

fn budget_key(instance: &str, rule: &str) -> String {
    format!("\u{1e}replay\u{1f}{instance}\u{1f}{rule}")
}

/// Writes a degraded batch's journal entry on the local state `store`,
/// made durable with the batch (its intent and counters share the sync).
pub async fn journal(store: &StateStore, events: &[Event], counted: &[Counted]) {
    let by_id: HashMap<&str, &Event> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let rules: Vec<RuleEntry> = counted
        .iter()
        .filter(|c| !c.events.is_empty())
        .map(|c| RuleEntry {
            rule: c.rule.to_string(),
            events: c
                .events
                .iter()
                .filter_map(|id| by_id.get(id.as_str()).map(|e| (*e).clone()))
                .collect(),
            fired: c.fired.clone(),
        })
        .collect();
    if rules.is_empty() {
        return;
    }
    match serde_json::to_string(&Entry { rules }) {
        Ok(text) => store.set(&journal_key(), text, None).await,
        Err(e) => tracing::error!(error = %e, "could not encode a journal entry"),
    }
}

/// Lets `redis` replay its journal through `worker` (its own plugin
/// instances) on the generation current at the time.
pub fn install(redis: &Arc<RedisState>, worker: Worker, generation: Arc<ArcSwap<Generation>>) {
    let worker = Arc::new(tokio::sync::Mutex::new(worker));
    let weak = Arc::downgrade(redis);
    redis.set_replayer(Arc::new(move |journal| {
        let (worker, generation, weak) = (worker.clone(), generation.clone(), weak.clone());
        Box::pin(async move {
            let redis = weak
                .upgrade()
                .ok_or_else(|| "the state backend is gone".to_string())?;
            let mut worker = worker.lock().await;
            run(&mut worker, &generation.load_full(), &redis, journal).await
        })
    }));
}

/// Replays `journal` (key, text) onto the shared state; see the module
/// documentation. Each entry leaves the local journal once every rule in
/// it is committed.
async fn run(
    worker: &mut Worker,
    g: &Generation,
    redis: &Arc<RedisState>,
    mut journal: Vec<(String, String)>,
) -> Result<(), String> {
    if g.id != worker.generation {
        worker.instances.retain(|hash| g.has_hash(hash));
        worker.generation = g.id;
    }
    journal.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = Vec::new();
    for (key, text) in journal {
        match serde_json::from_str::<Entry>(&text) {
            Ok(e) => entries.push((key, e)),
            Err(e) => {
                tracing::error!(key, error = %e, "unreadable journal entry; dropped");
                redis.local().delete(&key).await;
            }
        }
    }
    let present: BTreeSet<String> = entries.iter().map(|(k, _)| k.clone()).collect();
    let mut touched = BTreeSet::new();
    let mut events = 0usize;
    for (key, entry) in &entries {
        for part in &entry.rules {
            let Some(rule) = g.rules.iter().find(|r| *r.name == part.rule) else {
                tracing::warn!(rule = %part.rule, "a rule counted during the outage is gone; its events are not replayed");
                continue;
            };
            touched.insert(part.rule.clone());
            let replayed: Vec<Event> = part
                .events
                .iter()
                .cloned()
                .map(|mut e| {
                    // Marked as counted, so a redone replay skips them.
                    e.dedup = true;
                    e
                })
                .collect();
            events += replayed.len();
            let budget = |b: &mut Budget| {
                if !b.entries.iter().any(|k| present.contains(k)) {
                    *b = Budget::default(); // a leftover from an earlier replay
                }
                for (k, e) in &entries {
                    if b.entries.insert(k.clone()) {
                        for p in e.rules.iter().filter(|p| p.rule == part.rule) {
                            for alert_key in &p.fired {
                                *b.left.entry(alert_key.clone()).or_default() += 1;
                            }
                        }
                    }
                }
            };
            worker
                .replay_rule(g, redis, rule, &replayed, &budget)
                .await?;
        }
        redis.local().delete(key).await;
    }
    redis.local().sync().await.map_err(|e| e.to_string())?;
    for rule in touched {
        let mut conn = redis.connection();
        let key = redis.key(&budget_key(redis.instance(), &rule));
        if let Err(e) = redis::AsyncCommands::del::<_, ()>(&mut conn, key).await {
            tracing::warn!(error = %e, "could not remove a replay budget; it is reset next time");
        }
    }
    metrics::counter!("tocsin_replayed_events_total").increment(events as u64);
    tracing::info!(
        entries = entries.len(),
        events,
        "replayed the batches counted during the outage onto shared state"
    );
    Ok(())
}

/// Drops from `alerts` as many per key as `budget` has left: they were
/// already notified locally during the outage.
pub(super) fn suppress(budget: &mut HashMap<String, u64>, alerts: &mut Vec<Alert>) {
    alerts.retain(
        |alert| match budget.get_mut(&alert.key).filter(|n| **n > 0) {
            Some(left) => {
                *left -= 1;
                metrics::counter!("tocsin_replay_suppressed_total").increment(1);
                false
            }
            None => true,
        },
    );
}

impl Worker {
    /// Counts `events` for `rule` again on shared state in one transaction
    /// (redone on a lost lock), suppressing what the budget says was
    /// already notified; `prepare` brings the stored budget up to date.
    async fn replay_rule(
        &mut self,
        g: &Generation,
        redis: &Arc<RedisState>,
        rule: &Arc<ActiveRule>,
        events: &[Event],
        prepare: &(dyn Fn(&mut Budget) + Sync),
    ) -> Result<(), String> {
        let key = budget_key(redis.instance(), &rule.name);
        let mut last_error = String::new();
        for _ in 0..COMMIT_ATTEMPTS {
            let txn = Arc::new(
                redis
                    .begin_shared(&[&rule.name])
                    .await
                    .map_err(|e| e.to_string())?,
            );
            let mut budget: Budget = txn
                .get(&key)
                .await
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            prepare(&mut budget);
            let scope = BatchScope::shared(self.state.clone(), txn.clone());
            let rules = [rule.clone()];
            let batch = self
                .evaluate(g, events, &rules, &scope, Some(&mut budget.left))
                .await;
            if !batch.result.failed.is_empty() {
                metrics::counter!("tocsin_replay_failed_total")
                    .increment(batch.result.failed.len() as u64);
                tracing::warn!(rule = %rule.name, failed = batch.result.failed.len(), "the plugin failed on replayed events; they stay counted only where they were counted during the outage");
            }
            let text = serde_json::to_string(&budget).map_err(|e| e.to_string())?;
            txn.set(&key, text, Some(BUDGET_TTL_MS)).await;
            let fired = batch.out.notifications.len() as u64;
            match commit::run(&scope, &self.deliverer, batch.out, true).await {
                Ok(pending) => {
                    if let Some(pending) = pending {
                        pending.await?;
                    }
                    metrics::counter!("tocsin_alerts_total", "rule" => rule.name.to_string())
                        .increment(fired);
                    self.traces.record(batch.trail.into_steps()).await;
                    return Ok(());
                }
                Err(CommitError::Again(e)) => last_error = e,
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(format!("replaying rule `{}`: {last_error}", rule.name))
    }
}
