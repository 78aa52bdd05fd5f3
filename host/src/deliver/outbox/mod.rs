//! The durable outbox: every (notification, channel target) pair is written
//! here before it is attempted, and every attempt's outcome after.
//!
//! Why SQLite (WAL mode): one file in the data directory, crash-safe, and
//! queryable — notification history, deliveries by status and the dead
//! letters are plain SQL, which a key-value store would make us hand-index.
//! Throughput comes from group commit: one writer thread takes every
//! pending write (enqueues from all pipeline workers, status updates from
//! the dispatcher) and commits them in one transaction, so an fsync is
//! shared by hundreds of rows.

use std::path::Path;
use std::sync::mpsc;

use parking_lot::Mutex;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

mod writer;

use super::retry::RetryPolicy;
use super::Delivery;
use writer::{open, write_loop, Op};

/// Where a delivery is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Delivered,
    Dead,
    /// Another instance took it over while this one was down (cluster).
    #[serde(rename = "handed-over")]
    HandedOver,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
            Status::HandedOver => "handed-over",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "delivered" => Status::Delivered,
            "dead" => Status::Dead,
            "handed-over" => Status::HandedOver,
            _ => Status::Pending,
        }
    }
}

/// Which notifications a history search wants: newest first.
#[derive(Clone, Debug)]
pub struct NotificationQuery {
    /// Exactly this rule.
    pub rule: Option<String>,
    /// Keys containing this text.
    pub key: Option<String>,
    /// Created at or after (ms since the epoch).
    pub since: i64,
    /// Created at or before.
    pub until: i64,
    pub limit: u32,
}

/// One notification: an alert as it left the pipeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NotificationRow {
    pub id: String,
    pub rule: String,
    pub key: String,
    pub severity: String,
    pub title: String,
    pub summary: String,
    pub count: u64,
    pub created_at: i64,
    /// The alert as JSON (what channels rendered).
    pub alert_json: String,
}

/// One delivery of a notification to one channel target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliveryRow {
    /// Stable id: idempotency key for webhooks, Message-ID for email.
    pub id: String,
    pub notification_id: String,
    pub rule: String,
    pub channel: String,
    pub kind: String,
    /// Circuit-breaker key: `http://host:port` or `smtp`.
    pub target: String,
    pub status: Status,
    pub attempts: u32,
    pub policy: RetryPolicy,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub payload: Delivery,
}

/// Errors of the outbox store.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("outbox: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("outbox write failed: {0}")]
    Write(String),
    #[error("outbox writer stopped")]
    Closed,
}

/// Handle to the outbox. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Op>,
    reader: std::sync::Arc<Mutex<Connection>>,
}

impl Outbox {
    /// Opens (or creates) the outbox database at `path` and starts its writer.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        let writer = open(path)?;
        let reader = open(path)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("tocsin-outbox".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| OutboxError::Write(e.to_string()))?;
        Ok(Self {
            tx,
            reader: std::sync::Arc::new(Mutex::new(reader)),
        })
    }

    /// Durably records notifications and their deliveries; returns once
    /// committed.
    pub async fn enqueue(
        &self,
        notifications: Vec<NotificationRow>,
        deliveries: Vec<DeliveryRow>,
    ) -> Result<(), OutboxError> {
        if notifications.is_empty() && deliveries.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Op::Enqueue {
                notifications,
                deliveries,
                done: Some(done),
            })
            .map_err(|_| OutboxError::Closed)?;
        wait.await
            .map_err(|_| OutboxError::Closed)?
            .map_err(OutboxError::Write)
    }

    /// Records an attempt's outcome (committed with the next group).
    pub fn update(&self, row: &DeliveryRow) {
        let _ = self.tx.send(Op::Update {
            id: row.id.clone(),
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error.clone(),
            delivered_at: row.delivered_at,
        });
    }

    /// Waits until every write sent before this call is committed.
    pub async fn flush(&self) -> Result<(), OutboxError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Op::Barrier(done))
            .map_err(|_| OutboxError::Closed)?;
        wait.await.map_err(|_| OutboxError::Closed)
    }

    /// Forgets notifications, and finished deliveries, older than `before`.
    pub fn cleanup(&self, before: i64) {
        let _ = self.tx.send(Op::Cleanup { before });
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock()))
            .await
            .map_err(|e| OutboxError::Write(e.to_string()))?
            .map_err(OutboxError::from)
    }

    /// Every pending delivery (to resume after a restart).
    pub async fn pending(&self) -> Result<Vec<DeliveryRow>, OutboxError> {
        self.read(|c| {
            query_deliveries(
                c,
                "WHERE status = 'pending' ORDER BY next_attempt_at",
                params![],
            )
        })
        .await
    }

    /// Deliveries by status: `pending`, `failed` (pending after a failed
    /// attempt), `dead`, `delivered`, or all.
    pub async fn deliveries(
        &self,
        status: Option<String>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, OutboxError> {
        self.read(move |c| match status.as_deref() {
            Some("failed") => query_deliveries(
                c,
                "WHERE status = 'pending' AND attempts > 0 ORDER BY created_at DESC LIMIT ?1",
                params![limit],
            ),
            Some(s) => query_deliveries(
                c,
                "WHERE status = ?1 ORDER BY created_at DESC LIMIT ?2",
                params![s, limit],
            ),
            None => query_deliveries(c, "ORDER BY created_at DESC LIMIT ?1", params![limit]),
        })
        .await
    }

    /// One delivery by id.
    pub async fn delivery(&self, id: String) -> Result<Option<DeliveryRow>, OutboxError> {
        self.read(move |c| {
            Ok(query_deliveries(c, "WHERE id = ?1", params![id])?
                .into_iter()
                .next())
        })
        .await
    }

    /// Notification history, newest first, optionally for one rule and
    /// since a time.
    pub async fn notifications(
        &self,
        q: NotificationQuery,
    ) -> Result<Vec<(NotificationRow, Vec<DeliveryRow>)>, OutboxError> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, rule, key, severity, title, summary, count, alert_json, created_at FROM notifications
                 WHERE created_at >= ?1 AND created_at <= ?2 AND (?3 IS NULL OR rule = ?3)
                   AND (?4 IS NULL OR instr(key, ?4) > 0)
                 ORDER BY created_at DESC LIMIT ?5",
            )?;
            let rows = stmt
                .query_map(params![q.since, q.until, q.rule, q.key, q.limit], |r| {
                    Ok(NotificationRow {
                        id: r.get(0)?,
                        rule: r.get(1)?,
                        key: r.get(2)?,
                        severity: r.get(3)?,
                        title: r.get(4)?,
                        summary: r.get(5)?,
                        count: r.get::<_, i64>(6)? as u64,
                        alert_json: r.get(7)?,
                        created_at: r.get(8)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for n in rows {
                let d = query_deliveries(c, "WHERE notification_id = ?1 ORDER BY created_at", params![n.id])?;
                out.push((n, d));
            }
            Ok(out)
        })
        .await
    }

    /// The deliveries of one notification, in creation order.
    pub async fn deliveries_of(
        &self,
        notification_id: String,
    ) -> Result<Vec<DeliveryRow>, OutboxError> {
        self.read(move |c| {
            query_deliveries(
                c,
                "WHERE notification_id = ?1 ORDER BY created_at",
                params![notification_id],
            )
        })
        .await
    }

    /// Dead deliveries by channel, leaving out those of alerts whose
    /// `service` label is `skip_service` or under `skip_service/`
    /// (tocsin's own alerts: a dead self alert must not raise another).
    pub async fn dead_by_channel(
        &self,
        skip_service: &'static str,
    ) -> Result<Vec<(String, u64)>, OutboxError> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT channel, COUNT(*) FROM (
                   SELECT d.channel AS channel,
                          COALESCE(json_extract(n.alert_json, '$.labels.service'), '') AS service
                   FROM deliveries d JOIN notifications n ON n.id = d.notification_id
                   WHERE d.status = 'dead')
                 WHERE service <> ?1 AND substr(service, 1, length(?1) + 1) <> ?1 || '/'
                 GROUP BY channel ORDER BY channel",
            )?;
            let rows = stmt
                .query_map(params![skip_service], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Counts by status, for metrics and the status API.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>, OutboxError> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT status, COUNT(*) FROM deliveries GROUP BY status")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Dead letters back to pending with fresh attempts (`id` or all);
    /// returns the revived rows.
    pub async fn revive(
        &self,
        id: Option<String>,
        now: i64,
    ) -> Result<Vec<DeliveryRow>, OutboxError> {
        self.flush().await?;
        let rows = match id {
            Some(id) => {
                self.read(move |c| {
                    query_deliveries(c, "WHERE id = ?1 AND status = 'dead'", params![id])
                })
                .await?
            }
            None => {
                self.read(|c| query_deliveries(c, "WHERE status = 'dead'", params![]))
                    .await?
            }
        };
        let revived: Vec<DeliveryRow> = rows
            .into_iter()
            .map(|mut r| {
                r.status = Status::Pending;
                r.attempts = 0;
                r.next_attempt_at = now;
                r.last_error = Some(format!(
                    "replayed; was: {}",
                    r.last_error.unwrap_or_default()
                ));
                r
            })
            .collect();
        for r in &revived {
            self.update(r);
        }
        self.flush().await?;
        Ok(revived)
    }
}

fn query_deliveries(
    c: &Connection,
    tail: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<DeliveryRow>, rusqlite::Error> {
    let sql = format!(
        "SELECT id, notification_id, rule, channel, kind, target, payload, status, attempts, max_attempts, base_ms, cap_ms,
                next_attempt_at, last_error, created_at, delivered_at FROM deliveries {tail}"
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(p, |r| {
        let payload: String = r.get(6)?;
        let payload: Delivery = serde_json::from_str(&payload).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(DeliveryRow {
            id: r.get(0)?,
            notification_id: r.get(1)?,
            rule: r.get(2)?,
            channel: r.get(3)?,
            kind: r.get(4)?,
            target: r.get(5)?,
            payload,
            status: Status::parse(&r.get::<_, String>(7)?),
            attempts: r.get(8)?,
            policy: RetryPolicy {
                attempts: r.get(9)?,
                base_ms: r.get::<_, i64>(10)? as u64,
                cap_ms: r.get::<_, i64>(11)? as u64,
            },
            next_attempt_at: r.get(12)?,
            last_error: r.get(13)?,
            created_at: r.get(14)?,
            delivered_at: r.get(15)?,
        })
    })?;
    rows.collect()
}
