//! Stage 2½, continued: inhibition ([`crate::inhibit`]). An alert that an
//! active alert inhibits is recorded (history `inhibitedBy`), not
//! notified. The sources are every alert active in the state store when
//! the batch runs plus the alerts the batch itself fired, less those the
//! batch resolved. The store is read at most once per batch, and only
//! when some alert could be a target: a generation without inhibition
//! rules costs nothing.

use std::collections::{BTreeMap, HashSet};

use super::resolve::is_resolution;
use super::silence::Muted;
use crate::active::{fingerprint, labels_of};
use crate::inhibit::{Inhibitions, Source};
use crate::plugin::bindings::Alert;
use crate::state::StateStore;

/// A possible source: its fingerprint and labels.
type Known = (String, BTreeMap<String, String>);

/// One batch's view of what may inhibit its alerts.
pub struct Inhibitor<'a> {
    rules: &'a Inhibitions,
    state: &'a StateStore,
    /// The alerts active in the store, once read.
    stored: Option<Vec<Known>>,
    /// The alerts this batch fired.
    fired: Vec<Known>,
    /// The fingerprints of the alerts this batch resolved.
    ended: HashSet<String>,
}

impl<'a> Inhibitor<'a> {
    /// An inhibitor for a batch whose rules fired `alerts` (rule name and
    /// its alerts, resolutions included).
    pub fn new<'b>(
        rules: &'a Inhibitions,
        state: &'a StateStore,
        alerts: impl Iterator<Item = (&'b str, &'b [Alert])>,
    ) -> Self {
        let mut fired = Vec::new();
        let mut ended = HashSet::new();
        if !rules.rules().is_empty() {
            for (rule, list) in alerts {
                for a in list {
                    let print = fingerprint(rule, &a.key);
                    if is_resolution(a) {
                        ended.insert(print);
                    } else {
                        fired.push((print, labels_of(rule, a)));
                    }
                }
            }
        }
        Self {
            rules,
            state,
            stored: None,
            fired,
            ended,
        }
    }

    /// Whether `rule`'s `alert` is inhibited now, and by which alerts.
    /// Resolutions are never inhibited: they end what fired.
    pub async fn muted(&mut self, rule: &str, alert: &Alert) -> Option<Muted> {
        if self.rules.rules().is_empty() || is_resolution(alert) {
            return None;
        }
        let labels = labels_of(rule, alert);
        if !self.rules.may_inhibit(&labels) {
            return None;
        }
        if self.stored.is_none() {
            self.stored = Some(self.read().await);
        }
        let stored = self.stored.as_deref().unwrap_or_default();
        let sources = stored
            .iter()
            .filter(|(f, _)| !self.ended.contains(f))
            .chain(&self.fired)
            .map(|(f, l)| Source {
                fingerprint: f,
                labels: l,
            });
        let by = self
            .rules
            .inhibited_by(&fingerprint(rule, &alert.key), &labels, sources);
        (!by.is_empty()).then_some(Muted::Inhibited(by))
    }

    /// The alerts active in the store; none when it cannot be read (the
    /// batch's own alerts still inhibit).
    async fn read(&self) -> Vec<Known> {
        match crate::active::list(self.state).await {
            Ok(list) => list
                .into_iter()
                .map(|a| (a.fingerprint(), a.labels))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the active alerts for inhibition; only this batch's alerts inhibit");
                Vec::new()
            }
        }
    }
}
