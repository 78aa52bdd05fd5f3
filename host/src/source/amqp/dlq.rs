//! The AMQP dead letters (`<queue>.dead`): listed without taking them
//! away, and replayed to the exchange with their original routing key —
//! what `tocsin dlq` and the recovery loop ([`super::recovery`]) use.
//!
//! Both walk the queue with `basic.get`, holding every letter they look
//! at unacknowledged on a channel of their own, up to the depth the queue
//! had when they started (a letter a replay sends back to the dead letters
//! is not seen again in the same walk). Closing the channel puts back, in
//! order, everything not replayed: a listing changes nothing, and a
//! replay interrupted at any point — tocsin killed included — leaves each
//! letter either in the dead letters or published again, never neither.
//!
//! A letter is acknowledged only after the broker confirmed its copy, so
//! a crash between the two replays it twice; its event id is unchanged
//! and the rules recognise the second copy ([`crate::pipeline::dedup`]).
//! The copy goes only to the rules that failed on it
//! ([`crate::event::Event::only_rules`]): the others counted it already.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::Confirmation;
use lapin::{Channel, Connection};
use serde::{Deserialize, Serialize};

use super::dead::DeadLetter;
use crate::config::AmqpConfig;
use crate::event::now_ms;

/// Letters a listing holds at once at most.
pub const MAX_LIST: usize = 10_000;

/// Why the dead letters could not be read or replayed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("{0}")]
    Connect(String),
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
}

/// Which dead letters: every condition given must hold.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Filter {
    /// These ids only.
    pub ids: Vec<String>,
    /// `malformed` or `processing-failed`.
    pub reason: Option<String>,
    /// Letters this rule failed on.
    pub rule: Option<String>,
    /// Letters whose event has this error code.
    pub code: Option<String>,
    /// Letters dead-lettered at most this long ago.
    pub max_age_ms: Option<u64>,
    /// Every letter (a replay without a condition must say so).
    pub all: bool,
}

impl Filter {
    /// True when it names no condition and does not say `all`.
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.ids.is_empty()
            && self.reason.is_none()
            && self.rule.is_none()
            && self.code.is_none()
            && self.max_age_ms.is_none()
    }

    /// True when `l` meets every condition.
    pub fn matches(&self, l: &DeadLetter) -> bool {
        (self.ids.is_empty() || self.ids.contains(&l.id))
            && self.reason.as_ref().is_none_or(|r| *r == l.reason)
            && self.rule.as_ref().is_none_or(|r| l.rules.contains(r))
            && self
                .code
                .as_ref()
                .is_none_or(|c| l.error_code.as_ref() == Some(c))
            && self
                .max_age_ms
                .is_none_or(|m| l.age_ms.is_some_and(|a| a <= m))
    }
}

/// What a listing found.
#[derive(Debug, Default, Serialize)]
pub struct Listing {
    /// Letters in the queue when it started.
    pub total: u64,
    /// Those that match, up to the limit.
    pub letters: Vec<DeadLetter>,
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct Replayed {
    /// Ids published again (and taken off the dead letters).
    pub replayed: Vec<String>,
    /// Ids the exchange could not route (no binding for their routing
    /// key any more): left in the dead letters.
    pub unroutable: Vec<String>,
    /// Letters looked at and left where they were.
    pub kept: usize,
}

/// The dead letters of one `[amqp]` source. One walk at a time per
/// instance (a listing would not see what a replay holds).
pub struct DeadLetters {
    config: AmqpConfig,
    busy: tokio::sync::Mutex<()>,
}

impl DeadLetters {
    /// The dead letters of the source `config` describes.
    pub fn new(config: AmqpConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            busy: tokio::sync::Mutex::new(()),
        })
    }

    /// The dead-letter queue's name.
    pub fn queue(&self) -> String {
        format!("{}.dead", self.config.queue)
    }

    /// A channel, and the dead-letter queue's depth (0 when the queue does
    /// not exist yet: tocsin never connected).
    async fn open(&self) -> Result<Option<(Connection, Channel, u64)>, DlqError> {
        let conn = super::connect(&self.config)
            .await
            .map_err(DlqError::Connect)?;
        let ch = conn.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match ch
            .queue_declare(self.queue().as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => Ok(Some((conn, ch, u64::from(q.message_count())))),
            Err(_) => {
                let _ = conn.close(200, "no dead-letter queue".into()).await;
                Ok(None)
            }
        }
    }

    /// The letters matching `filter`, at most `limit` (and [`MAX_LIST`]).
    pub async fn list(&self, filter: &Filter, limit: usize) -> Result<Listing, DlqError> {
        let _one = self.busy.lock().await;
        let Some((conn, ch, total)) = self.open().await? else {
            return Ok(Listing::default());
        };
        let mut listing = Listing {
            total,
            letters: Vec::new(),
        };
        let now = now_ms();
        let get = BasicGetOptions { no_ack: false };
        for _ in 0..total.min(MAX_LIST as u64) {
            let Some(m) = ch.basic_get(self.queue().as_str().into(), get).await? else {
                break;
            };
            let letter = DeadLetter::of(&m.delivery, now);
            if filter.matches(&letter) && listing.letters.len() < limit.min(MAX_LIST) {
                listing.letters.push(letter);
            }
        }
        // Puts back everything it held, in order.
        let _ = conn.close(200, "listed".into()).await;
        Ok(listing)
    }

    /// Replays the letters `pick` chooses, at most `per_sec` a second
    /// when given, recording `by` as who recovered them.
    pub async fn replay(
        &self,
        pick: &(dyn Fn(&DeadLetter) -> bool + Send + Sync),
        by: &str,
        per_sec: Option<u32>,
    ) -> Result<Replayed, DlqError> {
        let _one = self.busy.lock().await;
        let Some((conn, ch, total)) = self.open().await? else {
            return Ok(Replayed::default());
        };
        let result = self.walk(&ch, total, pick, by, per_sec).await;
        let _ = conn.close(200, "replayed".into()).await;
        result
    }

    async fn walk(
        &self,
        ch: &Channel,
        total: u64,
        pick: &(dyn Fn(&DeadLetter) -> bool + Send + Sync),
        by: &str,
        per_sec: Option<u32>,
    ) -> Result<Replayed, DlqError> {
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut done = Replayed::default();
        let started = Instant::now();
        let get = BasicGetOptions { no_ack: false };
        for _ in 0..total {
            let Some(m) = ch.basic_get(self.queue().as_str().into(), get).await? else {
                break;
            };
            let d = m.delivery;
            let letter = DeadLetter::of(&d, now_ms());
            if !pick(&letter) {
                done.kept += 1;
                continue;
            }
            if let Some(rate) = per_sec.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(done.replayed.len() as f64 / f64::from(rate));
                tokio::time::sleep_until((started + due).into()).await;
            }
            let props = d
                .properties
                .clone()
                .with_headers(super::dead::replay_headers(&d, &letter, by));
            let confirm = ch
                .basic_publish(
                    self.config.exchange.as_str().into(),
                    letter.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &d.data,
                    props.with_delivery_mode(2),
                )
                .await?
                .await?;
            match confirm {
                Confirmation::Ack(None) => {
                    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                        .await?;
                    metrics::counter!("tocsin_amqp_dead_replayed_total", "by" => kind(by))
                        .increment(1);
                    tracing::info!(id = %letter.id, reason = %letter.reason, by, "dead letter replayed");
                    done.replayed.push(letter.id);
                }
                Confirmation::Ack(Some(_)) | Confirmation::Nack(_) | Confirmation::NotRequested => {
                    tracing::warn!(id = %letter.id, routing_key = %letter.routing_key, "dead letter not replayed: the exchange routes its key nowhere");
                    done.unroutable.push(letter.id);
                }
            }
        }
        Ok(done)
    }
}

/// The metric label of who replayed: `recovery` or `hand`.
fn kind(by: &str) -> &'static str {
    if by == super::recovery::BY {
        "recovery"
    } else {
        "hand"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(reason: &str, rules: &[&str], age_ms: Option<u64>) -> DeadLetter {
        DeadLetter {
            id: "d1".into(),
            reason: reason.into(),
            error: String::new(),
            routing_key: "system.error.x".into(),
            rules: rules.iter().map(|r| r.to_string()).collect(),
            dead_at: None,
            age_ms,
            deaths: 0,
            replays: 0,
            event_id: None,
            error_code: Some("DB_DOWN".into()),
            service_name: None,
            bytes: 0,
            preview: String::new(),
            versions: Default::default(),
        }
    }

    #[test]
    fn a_filter_needs_every_condition_and_an_empty_one_says_so() {
        assert!(Filter::default().is_empty());
        assert!(!Filter {
            all: true,
            ..Filter::default()
        }
        .is_empty());
        let l = letter("processing-failed", &["db"], Some(5_000));
        let f = Filter {
            reason: Some("processing-failed".into()),
            rule: Some("db".into()),
            code: Some("DB_DOWN".into()),
            max_age_ms: Some(10_000),
            ..Filter::default()
        };
        assert!(f.matches(&l));
        assert!(!Filter {
            rule: Some("web".into()),
            ..f.clone()
        }
        .matches(&l));
        assert!(!Filter {
            max_age_ms: Some(1_000),
            ..f.clone()
        }
        .matches(&l));
        // Age unknown: not young enough for an age filter.
        assert!(!f.matches(&letter("processing-failed", &["db"], None)));
        assert!(!Filter {
            ids: vec!["other".into()],
            ..Filter::default()
        }
        .matches(&l));
    }
}
