//! Policy files in the rules directory ([`crate::policy`]: inhibition
//! rules and time intervals), told from rules by their content and
//! reloaded like rules — a file that fails keeps its previous version
//! serving, and its error is shown by `/v1/policies` and `tocsin check`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::{Catalog, Entry, ReloadReport};
use crate::inhibit::{InhibitRule, Inhibitions};
use crate::interval::Intervals;
use crate::plugin::loader::content_hash;
use crate::policy::Policy;

/// One policy file's serving version.
pub(super) struct PolicyFile {
    hash: String,
    policy: Policy,
    loaded_at: i64,
}

/// The status API's view of a policy file.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyStatus {
    pub file: String,
    pub hash: Option<String>,
    pub loaded_at: Option<i64>,
    /// Its inhibition rules, one line each.
    pub inhibit: Vec<String>,
    /// The names of its time intervals.
    pub time_intervals: Vec<String>,
    pub last_error: Option<String>,
}

impl Catalog {
    /// Takes the policy files out of `files` (the rules directory's TOML
    /// files, leaving the rules), reloading those that changed; true when
    /// the policies serving changed.
    pub(super) fn reload_policies(
        &mut self,
        files: &mut Vec<PathBuf>,
        report: &mut ReloadReport,
    ) -> bool {
        let mut seen = Vec::new();
        let mut changed = false;
        files.retain(|path| {
            let Ok(text) = std::fs::read_to_string(path) else {
                return true; // the rule loader reports it
            };
            if !crate::policy::is_policy_file(&text) {
                return true;
            }
            seen.push((path.clone(), text));
            false
        });
        let before = self.policies.len();
        self.policies
            .retain(|p, _| seen.iter().any(|(s, _)| s == p));
        if self.policies.len() != before {
            report.changed.push("policy file removed".into());
            changed = true;
        }
        for (path, text) in seen {
            let hash = content_hash(text.as_bytes());
            let entry = self
                .policies
                .entry(path.clone())
                .or_insert_with(|| Entry::new(&path));
            if entry.current.as_ref().is_some_and(|c| c.hash == hash) {
                entry.last_error = None;
                entry.failed_hash = None;
                continue;
            }
            if entry.failed_hash.as_deref() == Some(hash.as_str()) {
                continue;
            }
            let parsed = crate::policy::parse(&text, &path.display().to_string())
                .and_then(|p| self.unique_intervals(&path, p));
            let entry = self
                .policies
                .entry(path.clone())
                .or_insert_with(|| Entry::new(&path));
            match parsed {
                Ok(policy) => {
                    tracing::info!(file = %path.display(), inhibit = policy.inhibit.len(), time_intervals = policy.intervals.len(), "policy loaded");
                    report
                        .changed
                        .push(format!("policy {} loaded", path.display()));
                    let loaded_at = crate::event::now_ms();
                    let file = PolicyFile {
                        hash,
                        policy,
                        loaded_at,
                    };
                    entry.loaded(Arc::new(file), "policy");
                    changed = true;
                }
                Err(e) => entry.refused(&e, hash, "policy", report),
            }
        }
        changed
    }

    /// `policy` of `path`, unless it names a time interval another
    /// serving policy file defines (a name means one thing).
    fn unique_intervals(&self, path: &std::path::Path, policy: Policy) -> Result<Policy, String> {
        for (other, e) in &self.policies {
            let Some(f) = e.current.as_ref().filter(|_| other != path) else {
                continue;
            };
            if let Some(n) = policy
                .intervals
                .keys()
                .find(|n| f.policy.intervals.contains_key(*n))
            {
                return Err(format!(
                    "time interval `{n}` is already defined in {}",
                    other.display()
                ));
            }
        }
        Ok(policy)
    }

    /// Every serving inhibition rule, in file order.
    pub(super) fn current_inhibitions(&self) -> Arc<Inhibitions> {
        let rules = self
            .policies
            .values()
            .filter_map(|e| e.current.as_ref())
            .flat_map(|f| f.policy.inhibit.iter().cloned())
            .collect();
        Arc::new(Inhibitions::new(rules))
    }

    /// Every serving time interval, by name.
    pub(super) fn current_intervals(&self) -> Arc<Intervals> {
        let all = self
            .policies
            .values()
            .filter_map(|e| e.current.as_ref())
            .flat_map(|f| f.policy.intervals.clone())
            .collect();
        Arc::new(all)
    }

    /// Status of every policy file seen.
    pub fn policy_status(&self) -> Vec<PolicyStatus> {
        self.policies
            .iter()
            .map(|(path, e)| {
                let c = e.current.as_ref();
                PolicyStatus {
                    file: path.display().to_string(),
                    hash: c.map(|f| f.hash.clone()),
                    loaded_at: c.map(|f| f.loaded_at),
                    inhibit: c
                        .map(|f| f.policy.inhibit.iter().map(describe).collect())
                        .unwrap_or_default(),
                    time_intervals: c
                        .map(|f| f.policy.intervals.keys().cloned().collect())
                        .unwrap_or_default(),
                    last_error: e.last_error.clone(),
                }
            })
            .collect()
    }
}

fn describe(r: &InhibitRule) -> String {
    let side = |ms: &[crate::silence::Matcher]| {
        ms.iter().map(|m| m.display()).collect::<Vec<_>>().join(",")
    };
    format!(
        "{{{}}} inhibits {{{}}} with equal [{}]",
        side(&r.source),
        side(&r.target),
        r.equal.join(",")
    )
}
