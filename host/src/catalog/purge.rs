//! A removed rule's state is dropped once the rule has stayed gone for
//! `[engine] purge_removed_after_secs`.
//!
//! Why: a rule's counters, values and dedup marks live in the host
//! ([`crate::state`]), not in the plugin; without a purge, deleting a
//! rule file (say, one whose plugin filled its state quota) would leave
//! its memory held until every key expired, which may be never. Why
//! wait: a rule file deleted by mistake and put back, or moved out and
//! in during a deploy, keeps its counts. A rule renamed inside its file
//! counts as removed under its old name.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::state::StateStore;

/// The rule names the catalog holds, and the purges waiting on them.
#[derive(Default)]
pub(super) struct Purger {
    /// `None`: never purge (`tocsin check`, which has scratch state).
    after: Option<Duration>,
    names: Arc<Mutex<Names>>,
}

#[derive(Default)]
struct Names {
    /// The names of every rule file's serving version, as of the last
    /// reload.
    present: HashSet<String>,
    /// How often each name went; a waiting purge runs only if its rule
    /// is still gone from the same removal (not gone, back, gone again).
    removals: HashMap<String, u64>,
}

impl Purger {
    /// Purges a removed rule's state `after` it went.
    pub(super) fn set_after(&mut self, after: Duration) {
        self.after = Some(after);
    }

    /// Records the rule names after a reload; schedules a purge for each
    /// name that was there before and is not now.
    pub(super) fn observe(&self, state: &StateStore, now: HashSet<String>) {
        let removed: Vec<(String, u64)> = {
            let mut names = self.names.lock();
            let gone: Vec<String> = names.present.difference(&now).cloned().collect();
            names.present = now;
            gone.into_iter()
                .map(|rule| {
                    let n = names.removals.entry(rule.clone()).or_default();
                    *n += 1;
                    let n = *n;
                    (rule, n)
                })
                .collect()
        };
        let Some(after) = self.after else { return };
        for (rule, removal) in removed {
            tracing::info!(
                rule = %rule,
                after_secs = after.as_secs(),
                "rule removed; its state is dropped unless it comes back in time"
            );
            let (state, names) = (state.clone(), self.names.clone());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                {
                    let names = names.lock();
                    if names.present.contains(&rule) || names.removals.get(&rule) != Some(&removal)
                    {
                        return;
                    }
                }
                let keys = state.purge_rule(&rule);
                metrics::counter!("tocsin_state_rules_purged_total").increment(1);
                tracing::info!(rule = %rule, keys, "removed rule's state dropped");
            });
        }
    }
}
