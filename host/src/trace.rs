//! Per-event traces (seed report 001): every step an event passes —
//! received, matched by a rule, the aggregator's result, the notifications
//! it completed — queryable at `GET /v1/events/{id}/trace`, where the
//! deliveries of those notifications and their attempts are joined in from
//! the outbox.
//!
//! Embedded: a bounded ring in memory (the newest `capacity` events).
//! With Redis: one list per event with a 24 h TTL, so any instance can
//! answer for an event another instance processed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How long a trace is kept in Redis.
const REDIS_TTL_MS: u64 = 24 * 3600 * 1000;

/// One step of an event's way through tocsin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// Milliseconds since the epoch.
    pub at: i64,
    /// `received`, `matched`, `duplicate`, `aggregated`, `failed`, `notified`.
    pub stage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The notification this step produced, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

impl Step {
    /// A step at the current time.
    pub fn now(stage: &str) -> Self {
        Self {
            at: crate::event::now_ms(),
            stage: stage.to_string(),
            rule: None,
            detail: None,
            notification: None,
        }
    }

    pub fn rule(mut self, rule: &str) -> Self {
        self.rule = Some(rule.to_string());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn notification(mut self, id: &str) -> Self {
        self.notification = Some(id.to_string());
        self
    }
}

struct Ring {
    steps: HashMap<String, Vec<Step>>,
    order: VecDeque<String>,
    capacity: usize,
}

enum Backend {
    Memory(Mutex<Ring>),
    Redis {
        conn: crate::state::conn::Conn,
        prefix: String,
    },
}

/// Where traces are kept. Cheap to clone.
#[derive(Clone)]
pub struct Traces {
    backend: Arc<Backend>,
}

impl Traces {
    /// A ring of the newest `capacity` events' traces (0 disables tracing).
    pub fn memory(capacity: usize) -> Self {
        Self {
            backend: Arc::new(Backend::Memory(Mutex::new(Ring {
                steps: HashMap::new(),
                order: VecDeque::new(),
                capacity,
            }))),
        }
    }

    /// Traces in Redis under `<prefix>trace:<event id>`, 24 h each.
    pub async fn redis(
        url: &str,
        prefix: &str,
        patience: crate::state::Patience,
    ) -> Result<Self, String> {
        let conn = crate::state::conn::Conn::open(url, patience, "traces").await?;
        Ok(Self {
            backend: Arc::new(Backend::Redis {
                conn,
                prefix: prefix.to_string(),
            }),
        })
    }

    /// Appends steps, grouped by event id. Never fails the caller: a lost
    /// trace step is logged, the event is processed regardless.
    pub async fn record(&self, steps: Vec<(String, Step)>) {
        if steps.is_empty() {
            return;
        }
        match &*self.backend {
            Backend::Memory(ring) => {
                let mut ring = ring.lock();
                if ring.capacity == 0 {
                    return;
                }
                for (id, step) in steps {
                    if !ring.steps.contains_key(&id) {
                        ring.order.push_back(id.clone());
                        while ring.order.len() > ring.capacity {
                            if let Some(old) = ring.order.pop_front() {
                                ring.steps.remove(&old);
                            }
                        }
                    }
                    ring.steps.entry(id).or_default().push(step);
                }
            }
            Backend::Redis { conn, prefix } => {
                let mut pipe = redis::pipe();
                let mut keys = Vec::new();
                for (id, step) in steps {
                    let key = format!("{prefix}trace:{id}");
                    if let Ok(json) = serde_json::to_string(&step) {
                        pipe.rpush(&key, json).ignore();
                    }
                    keys.push(key);
                }
                keys.dedup();
                for key in keys {
                    pipe.pexpire(&key, REDIS_TTL_MS as i64).ignore();
                }
                // Off the pipeline's path: a slow or absent Redis delays no event.
                let mut conn = conn.clone();
                tokio::spawn(async move {
                    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                        metrics::counter!("tocsin_trace_errors_total").increment(1);
                        tracing::debug!(error = %e, "trace steps not recorded");
                    }
                });
            }
        }
    }

    /// The steps recorded for `event_id`, oldest first.
    pub async fn get(&self, event_id: &str) -> Option<Vec<Step>> {
        match &*self.backend {
            Backend::Memory(ring) => ring.lock().steps.get(event_id).cloned(),
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let items: Vec<String> = redis::cmd("LRANGE")
                    .arg(format!("{prefix}trace:{event_id}"))
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                if items.is_empty() {
                    return None;
                }
                Some(
                    items
                        .iter()
                        .filter_map(|s| serde_json::from_str(s).ok())
                        .collect(),
                )
            }
        }
    }
}
