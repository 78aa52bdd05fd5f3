//! Grouping ([`crate::group`]) in the pipeline: stage 3 for a rule with a
//! `[group]` table adds each alert that passed muting to its group, in the
//! batch's own state scope (it commits with the counts behind it), and
//! routes nothing. A group's notification is a batch of its own on time
//! ([`Worker::flush_groups`]): in a scope on its rule (on Redis under the
//! rule's lock) it re-reads the group, renders it through the rule's
//! router and channels, marks it notified and commits both at one point,
//! so each group notification goes out once across instances.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::resolve::is_resolution;
use super::{commit, notify, route, Worker, COMMIT_ATTEMPTS};
use crate::active::labels_of;
use crate::catalog::{ActiveRule, Generation};
use crate::deliver::Outgoing;
use crate::event::now_ms;
use crate::group::{Group, Grouping};
use crate::plugin::bindings::Alert;
use crate::state::{group_key, rule_of, CommitError, StateOps, StateView, GROUP_PREFIX};

/// Adds `rule`'s `alert` to its group in `view`; the group's key, or
/// `None` for a resolution of an alert no group holds.
pub async fn add(
    view: &StateView,
    rule: &ActiveRule,
    grouping: &Grouping,
    alert: &Alert,
) -> Option<String> {
    let (key, labels) = grouping.group_of(&labels_of(&rule.name, alert));
    let skey = group_key(&rule.name, &key);
    let mut group = view
        .get(&skey)
        .await
        .and_then(|t| serde_json::from_str::<Group>(&t).ok())
        .unwrap_or_else(|| Group::new(key.clone(), labels, now_ms()));
    group.add(alert, is_resolution(alert));
    if group.members.is_empty() {
        return None;
    }
    let ttl = grouping.ttl_ms(rule.resolve_after_ms);
    if let Ok(text) = serde_json::to_string(&group) {
        view.set(&skey, text, Some(ttl)).await;
    }
    Some(key)
}

impl Worker {
    /// Notifies every group of `g`'s grouping rules that is due.
    pub async fn flush_groups(&mut self, g: &Generation) {
        if g.rules.iter().all(|r| r.group.is_none()) {
            return;
        }
        let groups = match self.state.texts_with_prefix(GROUP_PREFIX).await {
            Ok(gs) => gs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification groups; trying again");
                return;
            }
        };
        let now = now_ms();
        let mut due: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (skey, text) in groups {
            let Some(rule) = rule_of(&skey).and_then(|n| g.rules.iter().find(|r| *r.name == *n))
            else {
                continue;
            };
            let (Some(grouping), Ok(group)) = (&rule.group, serde_json::from_str::<Group>(&text))
            else {
                continue;
            };
            if grouping.due(&group, now) {
                due.entry(rule.name.to_string()).or_default().push(skey);
            }
        }
        for (rule, keys) in due {
            self.flush(g, &rule, &keys).await;
        }
    }

    /// Notifies `rule`'s groups `keys` that are still due (see the module
    /// documentation); returns how many notified.
    async fn flush(&mut self, g: &Generation, rule: &str, keys: &[String]) -> usize {
        self.on_generation(g);
        let Some(rule) = g.rules.iter().find(|r| *r.name == *rule).cloned() else {
            return 0;
        };
        let Some(grouping) = rule.group.clone() else {
            return 0;
        };
        for _ in 0..COMMIT_ATTEMPTS {
            let scope = match self.state.begin(&[&rule.name]).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "group notifications wait for the state backend");
                    return 0;
                }
            };
            if scope.journal {
                return 0; // degraded: another instance may hold the truth
            }
            let mut out = Outgoing::default();
            let mut sent = 0;
            for skey in keys {
                let Some(mut group) = scope
                    .view
                    .get(skey)
                    .await
                    .and_then(|t| serde_json::from_str::<Group>(&t).ok())
                else {
                    continue;
                };
                let now = now_ms();
                if !grouping.due(&group, now) {
                    continue; // another instance notified it
                }
                let alert = group.to_alert(&rule.name);
                let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
                out.notifications
                    .push(notify::row(&id, &alert, None, Vec::new()));
                let channels = route::run(&mut self.instances, g, &rule, &alert).await;
                let (channels, _) = route::scheduled(g, &rule, channels, now);
                notify::run(
                    &mut self.instances,
                    g,
                    &rule,
                    &id,
                    &alert,
                    &channels,
                    &mut out,
                )
                .await;
                if group.notified(now) {
                    if let Ok(text) = serde_json::to_string(&group) {
                        let ttl = grouping.ttl_ms(rule.resolve_after_ms);
                        scope.view.set(skey, text, Some(ttl)).await;
                    }
                } else {
                    scope.view.delete(skey).await;
                }
                sent += 1;
            }
            match commit::run(&scope, &self.deliverer, out, false).await {
                Err(CommitError::Again(e)) => {
                    tracing::info!(rule = %rule.name, error = %e, "group notification not committed; redoing it");
                    continue;
                }
                Err(CommitError::Failed(e)) => {
                    tracing::warn!(rule = %rule.name, error = %e, "group notification could not be made durable");
                    return 0;
                }
                Ok(_) => {
                    metrics::counter!("tocsin_group_notifications_total", "rule" => rule.name.to_string())
                        .increment(sent as u64);
                    return sent;
                }
            }
        }
        0
    }
}
