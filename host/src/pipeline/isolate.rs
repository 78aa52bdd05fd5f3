//! Isolation: a rule whose plugin ran past its CPU deadline gets a lane of
//! its own, so its next slow call holds no other rule's events.
//!
//! Why: a worker runs a batch's rules one after the other and commits the
//! batch whole, and on the embedded store an open batch holds back the
//! log cut every other batch waits on. A plugin that spins to its deadline
//! (200 ms by default) stalled every event in its batch, and, through the
//! cut, every batch on the machine (issue 17, figure 9). So the first
//! deadline a rule's plugin hits *strikes* it ([`strike`], called from
//! [`super::observe`]): from the next batch on, workers leave the rule
//! out and hand its events to the isolated lane ([`Lane`]), one worker of
//! its own that runs them on a private copy of the state
//! ([`crate::state::overlay`]), holding no gate. The job's owner still
//! gets one answer, once both parts are durable; nothing is counted twice
//! if a part is redone.
//!
//! A rule stays isolated [`ISOLATE_FOR_MS`] after its last strike, then
//! goes back to the shared workers; a new version of the rule (another
//! definition or plugin) starts afresh. The one stall left is the first
//! offence: the batch that carried it, and on the embedded store the
//! batches waiting on the same cut, wait for its deadline once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::job::{Intake, JobOutcome};
use super::{Lane as Part, Worker};
use crate::catalog::Generation;
use crate::event::Event;

/// How long a rule stays isolated after its last strike.
pub const ISOLATE_FOR_MS: i64 = 10 * 60 * 1000;
/// Jobs the isolated lane holds before it refuses more (their events then
/// fail for the isolated rules only, and their sources send them again).
const LANE_JOBS: usize = 256;

/// Why and since when a rule runs isolated, for `/v1/rules`.
#[derive(Clone, Debug, Serialize)]
pub struct Isolation {
    /// When the first strike of this stay was (ms since the epoch).
    pub since: i64,
    /// When the last one was; the rule goes back [`ISOLATE_FOR_MS`] later.
    pub last_strike: i64,
    pub strikes: u64,
    /// The last call that ran past its deadline.
    pub reason: String,
    /// The version of the rule it struck ([`crate::catalog::ActiveRule::version`]),
    /// once a batch saw it.
    #[serde(skip)]
    version: Option<String>,
}

static ISOLATED: LazyLock<Mutex<HashMap<String, Isolation>>> = LazyLock::new(Mutex::default);
/// How many rules [`ISOLATED`] holds: the hot path's check costs one load
/// while no rule is isolated.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Publishes how many rules `all` isolates (the fast check and the gauge).
fn recount(all: &HashMap<String, Isolation>) {
    COUNT.store(all.len(), Ordering::Release);
    metrics::gauge!("tocsin_rules_isolated").set(all.len() as f64);
}

/// Isolates `rule` (or extends its stay): one of its plugin calls ran
/// past its deadline.
pub fn strike(rule: &str, reason: &str) {
    let now = crate::event::now_ms();
    let mut all = ISOLATED.lock();
    let isolation = all.entry(rule.to_string()).or_insert_with(|| {
        metrics::counter!("tocsin_rule_isolations_total", "rule" => rule.to_string()).increment(1);
        tracing::warn!(
            rule,
            reason,
            "rule isolated: its plugin ran past its deadline; its events run in a lane of their own"
        );
        Isolation {
            since: now,
            last_strike: now,
            strikes: 0,
            reason: String::new(),
            version: None,
        }
    });
    isolation.last_strike = now;
    isolation.strikes += 1;
    isolation.reason = crate::plugin::quota::cut(reason, 512);
    recount(&all);
}

/// Whether `rule` runs isolated, and since when; a stay that ended (its
/// time is up, or `version` is another version of the rule than the one
/// struck) is dropped here.
pub fn isolation(rule: &str, version: Option<&str>) -> Option<Isolation> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    let now = crate::event::now_ms();
    let mut all = ISOLATED.lock();
    let i = all.get_mut(rule)?;
    let same = match (&i.version, version) {
        (Some(struck), Some(v)) => struck == v,
        (None, Some(v)) => {
            i.version = Some(v.to_string());
            true
        }
        (_, None) => true,
    };
    if same && now - i.last_strike < ISOLATE_FOR_MS {
        return Some(i.clone());
    }
    all.remove(rule);
    tracing::info!(rule, "rule back on the shared workers");
    recount(&all);
    None
}

/// The rules of `g` that take events and run isolated now (a rule's
/// version is worked out only for the rules that were struck).
pub fn isolated_rules(g: &Generation) -> Vec<String> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return Vec::new();
    }
    let struck: Vec<_> = {
        let all = ISOLATED.lock();
        g.rules
            .iter()
            .filter(|r| r.enabled && all.contains_key(&*r.name))
            .collect()
    };
    struck
        .into_iter()
        .filter(|r| isolation(&r.name, Some(&r.version())).is_some())
        .map(|r| r.name.to_string())
        .collect()
}

/// Events handed to the isolated lane, for `rules` only.
struct LaneJob {
    events: Vec<Event>,
    rules: Vec<String>,
    done: oneshot::Sender<JobOutcome>,
}

/// The isolated lane's intake. Cheap to clone.
#[derive(Clone)]
pub struct Lane {
    tx: mpsc::Sender<LaneJob>,
    /// What a graceful shutdown waits on: a part in the lane is held.
    intake: Arc<Intake>,
}

/// What handing a batch's isolated part to the lane gave.
pub enum Handed {
    /// Its outcome, once the lane is done with it.
    Taken(oneshot::Receiver<JobOutcome>),
    /// The lane is full: these events failed for the isolated rules.
    Refused(super::Failures),
}

impl Lane {
    /// Starts the lane on `worker` (a worker of its own), on a thread of
    /// its own.
    pub(super) fn start(
        mut worker: Worker,
        generation: Arc<arc_swap::ArcSwap<Generation>>,
        intake: Arc<Intake>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<LaneJob>(LANE_JOBS);
        let held = intake.clone();
        let lane = async move {
            while let Some(job) = rx.recv().await {
                let g = generation.load_full();
                let rules: Vec<&str> = job.rules.iter().map(String::as_str).collect();
                let mut result = worker
                    .process(&g, &job.events, true, Part::Isolated(&rules))
                    .await;
                if let Some(pending) = result.pending.take() {
                    if let Err(e) = pending.await {
                        result.durable = Err(e);
                    }
                }
                let _ = job.done.send(JobOutcome {
                    failed: result.failed,
                    durable: result.durable,
                });
                held.held.fetch_sub(1, Ordering::SeqCst);
            }
        };
        // A thread and a runtime of its own: a plugin call blocks the
        // thread it runs on for as long as it takes (up to its deadline),
        // and on the shared runtime that would be one of the threads the
        // HTTP intake and the shared workers run on.
        let own = std::thread::Builder::new()
            .name("tocsin-isolated".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(lane),
                    Err(e) => tracing::error!(error = %e, "the isolated lane could not start"),
                }
            });
        if let Err(e) = own {
            tracing::error!(error = %e, "the isolated lane's thread could not start");
        }
        Self { tx, intake }
    }

    /// Hands the events of `events` that `rules` (isolated, from
    /// [`isolated_rules`]) take to the lane; `None` when there are none.
    pub fn hand(&self, g: &Generation, events: &[Event], rules: &[String]) -> Option<Handed> {
        let takers: Vec<_> = g
            .rules
            .iter()
            .filter(|r| rules.iter().any(|n| **n == *r.name))
            .collect();
        let mine: Vec<Event> = events
            .iter()
            .filter(|e| takers.iter().any(|r| r.takes(e)))
            .cloned()
            .collect();
        if mine.is_empty() {
            return None;
        }
        let (done, rx) = oneshot::channel();
        let ids: Vec<String> = mine.iter().map(|e| e.event_id.clone()).collect();
        let job = LaneJob {
            events: mine,
            rules: rules.to_vec(),
            done,
        };
        self.intake.held.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => {
                metrics::counter!("tocsin_isolated_events_total").increment(ids.len() as u64);
                Some(Handed::Taken(rx))
            }
            Err(_) => {
                self.intake.held.fetch_sub(1, Ordering::SeqCst);
                metrics::counter!("tocsin_isolated_refused_total").increment(ids.len() as u64);
                let error = format!(
                    "rules {} run isolated (a plugin ran past its deadline) and their lane is full; send again",
                    rules.join(", ")
                );
                let mut failed = super::Failures::new();
                for (id, r) in ids
                    .iter()
                    .flat_map(|id| takers.iter().map(move |r| (id, r)))
                {
                    super::job::record(&mut failed, id, &r.name, &r.version(), &error);
                }
                Some(Handed::Refused(failed))
            }
        }
    }
}

/// Adds the isolated part's outcome to the batch's `failed` and `durable`.
pub async fn merge(handed: Handed, failed: &mut super::Failures, durable: &mut Result<(), String>) {
    let outcome = match handed {
        Handed::Refused(refused) => {
            super::job::merge(failed, refused);
            return;
        }
        Handed::Taken(rx) => match rx.await {
            Ok(outcome) => outcome,
            Err(_) => {
                *durable = Err("the isolated lane stopped".into());
                return;
            }
        },
    };
    super::job::merge(failed, outcome.failed);
    if let (Ok(()), Err(e)) = (&*durable, outcome.durable) {
        *durable = Err(e);
    }
}
