//! Escalation: a rule's `[[escalation]]` steps ("after 15 m unacknowledged
//! → pagerduty; after 45 m → the on-call phone") call their channels once
//! each while an alert stays active and unacknowledged that long after it
//! first fired.
//!
//! The timer is the active alert itself ([`crate::active`]): it keeps when
//! the alert started and how many steps fired (`escalated`), so a step
//! survives a restart or a plugin swap with nothing else to keep. Every
//! tick ([`super::timers`]) each instance looks for due steps; a due step
//! runs as a batch of its own
//! ([`Worker::escalate`]): in a state scope on its rule (on Redis, under
//! the rule's lock), it re-reads the alert, advances `escalated` and
//! renders the step's channels, and commits both at one point — so a step
//! fires once, even with several instances looking, and a crash before
//! the commit only delays it. An acknowledged or resolved alert stops
//! escalating; a silenced or inhibited one waits (the step fires if it is
//! still firing and unacknowledged when the mute ends). Steps are checked
//! one per alert and tick, so an engine down past two steps fires them in
//! order.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{commit, notify, Worker, COMMIT_ATTEMPTS};
use crate::active::{active_key, ActiveAlert};
use crate::catalog::{ActiveRule, Generation};
use crate::deliver::Outgoing;
use crate::event::now_ms;
use crate::state::{CommitError, StateOps};

/// The escalation step of `rule` due for `alert` at `now`, if one is.
pub fn due(rule: &ActiveRule, alert: &ActiveAlert, now: i64) -> Option<usize> {
    if alert.acknowledged.is_some() {
        return None;
    }
    let step = alert.escalated as usize;
    let s = rule.escalation.get(step)?;
    (alert.starts_at.saturating_add(s.after_ms as i64) <= now).then_some(step)
}

impl Worker {
    /// Fires every escalation step of `g`'s rules that is due.
    pub async fn escalate_due(&mut self, g: &Generation) {
        if g.rules.iter().all(|r| r.escalation.is_empty()) {
            return;
        }
        let alerts = match crate::active::list(&self.state).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the active alerts for escalation; trying again");
                return;
            }
        };
        let now = now_ms();
        let mut by_rule: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in alerts {
            let Some(rule) = g.rules.iter().find(|r| *r.name == *a.rule) else {
                continue;
            };
            if due(rule, &a, now).is_some() {
                by_rule.entry(a.rule.clone()).or_default().push(a.key);
            }
        }
        for (rule, keys) in by_rule {
            self.escalate(g, &rule, &keys).await;
        }
    }

    /// Fires the due escalation step of each of `rule`'s alerts `keys`
    /// (see the module documentation); returns how many fired.
    pub async fn escalate(&mut self, g: &Generation, rule: &str, keys: &[String]) -> usize {
        self.on_generation(g);
        let Some(rule) = g.rules.iter().find(|r| *r.name == *rule).cloned() else {
            return 0;
        };
        for _ in 0..COMMIT_ATTEMPTS {
            let scope = match self.state.begin(&[&rule.name]).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "escalation waits for the state backend");
                    return 0;
                }
            };
            if scope.journal {
                // Degraded (Redis down): another instance may hold the
                // truth; escalate once shared state answers.
                return 0;
            }
            let mut out = Outgoing::default();
            let mut fired = Vec::new();
            for key in keys {
                let skey = active_key(&rule.name, key);
                let Some(mut alert) = scope
                    .view
                    .get(&skey)
                    .await
                    .and_then(|t| serde_json::from_str::<ActiveAlert>(&t).ok())
                else {
                    continue; // resolved or expired meanwhile
                };
                let now = now_ms();
                let Some(step) = due(&rule, &alert, now) else {
                    continue; // acknowledged, or another instance fired it
                };
                if !self.silences.muting(now, |n| alert.label(n)).is_empty() {
                    continue;
                }
                alert.escalated += 1;
                let ttl = alert.ends_at.saturating_sub(now).max(1) as u64;
                match serde_json::to_string(&alert) {
                    Ok(text) => scope.view.set(&skey, text, Some(ttl)).await,
                    Err(_) => continue,
                }
                let rendered = alert.to_alert(step + 1);
                let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
                out.notifications
                    .push(notify::row(&id, &rendered, None, Vec::new()));
                let channels = &rule.escalation[step].channels;
                notify::run(
                    &mut self.instances,
                    g,
                    &rule,
                    &id,
                    &rendered,
                    channels,
                    &mut out,
                )
                .await;
                fired.push((step + 1, alert.fingerprint()));
            }
            match commit::run(&scope, &self.deliverer, out, false).await {
                Err(CommitError::Again(e)) => {
                    tracing::info!(rule = %rule.name, error = %e, "escalation not committed; redoing it");
                    continue;
                }
                Err(CommitError::Failed(e)) => {
                    tracing::warn!(rule = %rule.name, error = %e, "escalation could not be made durable");
                    return 0;
                }
                Ok(_) => {
                    for (step, fingerprint) in &fired {
                        tracing::info!(rule = %rule.name, fingerprint, step, "alert escalated");
                        metrics::counter!("tocsin_alerts_escalated_total", "rule" => rule.name.to_string(), "step" => step.to_string()).increment(1);
                    }
                    return fired.len();
                }
            }
        }
        0
    }
}
