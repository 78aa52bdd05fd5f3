//! The outbox's one writer: a thread that takes every queued write and
//! commits them in one SQLite transaction per wake-up (group commit), and
//! the schema it writes.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::{DeliveryRow, NotificationRow, OutboxError, Status};

/// One queued write.
pub(super) enum Op {
    Enqueue {
        notifications: Vec<NotificationRow>,
        deliveries: Vec<DeliveryRow>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    Update {
        id: String,
        status: Status,
        attempts: u32,
        next_attempt_at: i64,
        last_error: Option<String>,
        delivered_at: Option<i64>,
    },
    Cleanup {
        before: i64,
    },
    Barrier(oneshot::Sender<()>),
}

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    summary TEXT NOT NULL,
    count INTEGER NOT NULL,
    alert_json TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_rule_time ON notifications(rule, created_at);
CREATE INDEX IF NOT EXISTS notifications_time ON notifications(created_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    base_ms INTEGER NOT NULL,
    cap_ms INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries(status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_notification ON deliveries(notification_id);
"#;

/// Opens the database at `path`, creating the schema if needed.
pub(super) fn open(path: &Path) -> Result<Connection, OutboxError> {
    let conn = Connection::open(path).map_err(|source| OutboxError::Open {
        path: path.display().to_string(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Applies every queued write in one transaction per wake-up.
pub(super) fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = apply(&mut conn, &mut ops);
        if let Err(e) = &result {
            tracing::error!(error = %e, "outbox commit failed");
        }
        for op in ops {
            match op {
                Op::Enqueue {
                    done: Some(done), ..
                } => {
                    let _ = done.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                }
                Op::Barrier(done) => {
                    let _ = done.send(());
                }
                _ => {}
            }
        }
    }
}

fn apply(conn: &mut Connection, ops: &mut [Op]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut ins_n = tx.prepare_cached(
            "INSERT OR IGNORE INTO notifications (id, rule, key, severity, title, summary, count, alert_json, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut ins_d = tx.prepare_cached(
            "INSERT OR IGNORE INTO deliveries (id, notification_id, rule, channel, kind, target, payload, status, attempts,
                max_attempts, base_ms, cap_ms, next_attempt_at, last_error, created_at, delivered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        let mut upd = tx.prepare_cached(
            "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5, delivered_at = ?6
             WHERE id = ?1",
        )?;
        for op in ops.iter() {
            match op {
                Op::Enqueue {
                    notifications,
                    deliveries,
                    ..
                } => {
                    for n in notifications {
                        ins_n.execute(params![
                            n.id,
                            n.rule,
                            n.key,
                            n.severity,
                            n.title,
                            n.summary,
                            n.count as i64,
                            n.alert_json,
                            n.created_at
                        ])?;
                    }
                    for d in deliveries {
                        let payload = serde_json::to_string(&d.payload).unwrap_or_default();
                        ins_d.execute(params![
                            d.id,
                            d.notification_id,
                            d.rule,
                            d.channel,
                            d.kind,
                            d.target,
                            payload,
                            d.status.as_str(),
                            d.attempts,
                            d.policy.attempts,
                            d.policy.base_ms as i64,
                            d.policy.cap_ms as i64,
                            d.next_attempt_at,
                            d.last_error,
                            d.created_at,
                            d.delivered_at
                        ])?;
                    }
                }
                Op::Update {
                    id,
                    status,
                    attempts,
                    next_attempt_at,
                    last_error,
                    delivered_at,
                } => {
                    upd.execute(params![
                        id,
                        status.as_str(),
                        attempts,
                        next_attempt_at,
                        last_error,
                        delivered_at
                    ])?;
                }
                Op::Cleanup { before } => {
                    tx.execute(
                        "DELETE FROM deliveries WHERE status != 'pending' AND created_at < ?1",
                        params![before],
                    )?;
                    tx.execute(
                        "DELETE FROM notifications WHERE created_at < ?1
                         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = notifications.id)",
                        params![before],
                    )?;
                }
                Op::Barrier(_) => {}
            }
        }
    }
    tx.commit()
}
