//! Grouping of notifications (Alertmanager's `group_by`, `group_wait`,
//! `group_interval`, `repeat_interval`): a rule with a `[group]` table
//! does not notify each alert; its alerts with equal values of the `by`
//! labels gather in one group, and the group notifies once — listing them
//! — `wait` after its first alert, then at most every `interval` when it
//! has news (a new alert, one firing again, one resolved), and every
//! `repeat` while its alerts keep firing with nothing new. A storm of 500
//! alerts for one service becomes one notification.
//!
//! A group is kept in the state store under its rule (durable, shared by
//! instances on Redis), written by the batch that adds to it, and flushed
//! by a batch of its own on time ([`crate::pipeline::group`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Severity;
use crate::plugin::bindings::Alert;

/// A rule's grouping, validated.
#[derive(Clone, Debug)]
pub struct Grouping {
    /// The labels that make a group (none: one group for the rule).
    pub by: Vec<String>,
    pub wait_ms: u64,
    pub interval_ms: u64,
    /// `None`: no re-notification without news.
    pub repeat_ms: Option<u64>,
}

/// One alert of a group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub title: String,
    pub count: u64,
    pub severity: Severity,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Resolved since the last notification (listed once more, then gone).
    #[serde(default)]
    pub resolved: bool,
}

/// A group, as kept in state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    /// Its key (the `by` labels' values) and those labels.
    pub key: String,
    pub labels: BTreeMap<String, String>,
    /// Its alerts by alert key.
    pub members: BTreeMap<String, Member>,
    /// When its first alert arrived.
    pub created_at: i64,
    /// When it last notified.
    pub notified_at: Option<i64>,
    /// Whether something changed since it last notified.
    pub news: bool,
}

impl Grouping {
    /// The key and labels of `alert`'s group (labels as silences see them,
    /// `labels`; a missing one groups as empty).
    pub fn group_of(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> (String, BTreeMap<String, String>) {
        let picked: BTreeMap<String, String> = self
            .by
            .iter()
            .map(|l| (l.clone(), labels.get(l).cloned().unwrap_or_default()))
            .collect();
        let key = if picked.is_empty() {
            "all".to_string()
        } else {
            picked
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        (key, picked)
    }

    /// Whether `group` notifies at `now`.
    pub fn due(&self, group: &Group, now: i64) -> bool {
        match group.notified_at {
            None => group.created_at.saturating_add(self.wait_ms as i64) <= now,
            Some(at) if group.news => at.saturating_add(self.interval_ms as i64) <= now,
            Some(at) => self.repeat_ms.is_some_and(|r| {
                at.saturating_add(r as i64) <= now && group.members.values().any(|m| !m.resolved)
            }),
        }
    }

    /// How long a group is kept without news: past its next repeat.
    pub fn ttl_ms(&self, resolve_after_ms: u64) -> u64 {
        resolve_after_ms
            .max(self.repeat_ms.unwrap_or(0))
            .saturating_add(self.wait_ms.max(self.interval_ms))
    }
}

impl Group {
    /// A new, empty group.
    pub fn new(key: String, labels: BTreeMap<String, String>, now: i64) -> Self {
        Self {
            key,
            labels,
            members: BTreeMap::new(),
            created_at: now,
            notified_at: None,
            news: false,
        }
    }

    /// Adds `alert` (a firing alert, or a resolution when `resolved`).
    /// A resolution of an alert the group does not hold is news of
    /// nothing: it changes nothing.
    pub fn add(&mut self, alert: &Alert, resolved: bool) {
        if resolved {
            if let Some(m) = self.members.get_mut(&alert.key) {
                m.resolved = true;
                self.news = true;
            }
            return;
        }
        let m = self.members.entry(alert.key.clone()).or_insert(Member {
            title: alert.title.clone(),
            count: 0,
            severity: Severity::from(alert.severity),
            first_seen: alert.first_seen,
            last_seen: alert.last_seen,
            resolved: false,
        });
        m.title = alert.title.clone();
        m.count = alert.count;
        m.severity = Severity::from(alert.severity);
        m.last_seen = alert.last_seen;
        m.resolved = false;
        self.news = true;
    }

    /// The one notification for the group now, as `rule`'s alert.
    pub fn to_alert(&self, rule: &str) -> Alert {
        let firing: Vec<&Member> = self.members.values().filter(|m| !m.resolved).collect();
        let resolved = self.members.len() - firing.len();
        let severity = self
            .members
            .values()
            .map(|m| m.severity)
            .min()
            .unwrap_or(Severity::High);
        let scope = if self.labels.is_empty() {
            String::new()
        } else {
            format!(" for {}", self.key)
        };
        let title = match (firing.len(), resolved) {
            (1, 0) => firing[0].title.clone(),
            (n, 0) => format!("{n} alerts of {rule}{scope}"),
            (n, r) => format!("{n} alerts of {rule}{scope} ({r} resolved)"),
        };
        let summary = self
            .members
            .values()
            .map(|m| {
                let mark = if m.resolved { "[RESOLVED] " } else { "" };
                format!("- {mark}{} (x{})", m.title, m.count)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut labels: Vec<(String, String)> = self.labels.clone().into_iter().collect();
        labels.push(("group".into(), self.key.clone()));
        labels.push(("group-size".into(), self.members.len().to_string()));
        Alert {
            key: format!("group:{}", self.key),
            rule: rule.to_string(),
            count: firing.iter().map(|m| m.count).sum(),
            first_seen: self
                .members
                .values()
                .map(|m| m.first_seen)
                .min()
                .unwrap_or(0),
            last_seen: self
                .members
                .values()
                .map(|m| m.last_seen)
                .max()
                .unwrap_or(0),
            severity: severity.into(),
            title,
            summary,
            samples: Vec::new(),
            labels,
        }
    }

    /// After notifying at `now`: no news, and resolved members gone.
    /// Whether the group still holds anything.
    pub fn notified(&mut self, now: i64) -> bool {
        self.notified_at = Some(now);
        self.news = false;
        self.members.retain(|_, m| !m.resolved);
        !self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::WitSeverity;

    fn alert(key: &str, count: u64) -> Alert {
        Alert {
            key: key.into(),
            rule: "r".into(),
            count,
            first_seen: 1,
            last_seen: 2,
            severity: WitSeverity::High,
            title: format!("{key} down"),
            summary: String::new(),
            samples: Vec::new(),
            labels: Vec::new(),
        }
    }

    #[test]
    fn wait_interval_and_repeat() {
        let g = Grouping {
            by: vec!["service".into()],
            wait_ms: 100,
            interval_ms: 1000,
            repeat_ms: Some(5000),
        };
        let labels = BTreeMap::from([("service".to_string(), "db".to_string())]);
        let (key, picked) = g.group_of(&labels);
        assert_eq!(key, "service=db");
        let mut group = Group::new(key, picked, 0);
        group.add(&alert("a", 1), false);
        group.add(&alert("b", 2), false);
        assert!(!g.due(&group, 99) && g.due(&group, 100));
        let n = group.to_alert("r");
        assert_eq!(
            (n.count, n.title.as_str()),
            (3, "2 alerts of r for service=db")
        );
        assert!(n.summary.contains("a down (x1)") && n.summary.contains("b down (x2)"));
        assert!(group.notified(100));
        assert!(!g.due(&group, 1100), "nothing new: waits for the repeat");
        assert!(g.due(&group, 5100), "repeats while firing");
        group.add(&alert("a", 3), true);
        assert!(
            !g.due(&group, 1099) && g.due(&group, 1100),
            "news: after the interval"
        );
        assert!(group.to_alert("r").summary.contains("[RESOLVED] a down"));
        assert!(group.notified(1100));
        assert_eq!(group.members.len(), 1, "the resolved one is gone");
        group.add(&alert("b", 0), true);
        assert!(!group.notified(2200), "nothing left");
    }
}
