//! Delivery status: `GET /v1/channels` (circuit breakers),
//! `GET /v1/notifications`, `GET /v1/deliveries`, and dead-letter replay.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::deliver::DeliveryRow;
use crate::engine::Engine;
use crate::event::now_ms;

fn server_error(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

fn limit(q: &HashMap<String, String>) -> u32 {
    q.get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .min(10_000)
}

fn delivery_json(d: &DeliveryRow) -> Value {
    json!({
        "id": d.id, "notification": d.notification_id, "rule": d.rule, "channel": d.channel,
        "kind": d.kind, "target": d.target, "status": d.status, "attempts": d.attempts,
        "maxAttempts": d.policy.attempts, "nextAttemptAt": d.next_attempt_at,
        "lastError": d.last_error, "createdAt": d.created_at, "deliveredAt": d.delivered_at,
    })
}

/// Circuit breaker per delivery target, and delivery counts.
pub async fn channels(State(engine): State<Engine>) -> Response {
    let d = engine.deliverer.dispatcher();
    match engine.deliverer.outbox().counts().await {
        Ok(counts) => {
            let counts: serde_json::Map<String, Value> =
                counts.into_iter().map(|(k, v)| (k, json!(v))).collect();
            Json(json!({
                "breakers": d.breakers().status(),
                "deliveries": counts,
                "inFlight": d.in_flight(),
                "emailEnabled": d.email_enabled(),
                "websocketClients": engine.hub.clients(),
            }))
            .into_response()
        }
        Err(e) => server_error(e),
    }
}

/// A time parameter: ms since the epoch, `default` when absent.
fn millis(q: &HashMap<String, String>, name: &str, default: i64) -> Result<i64, String> {
    match q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| format!("{name}: {s:?} is not milliseconds since the epoch")),
    }
}

/// Notification history, newest first: `?rule=&key=&since=<ms>&until=<ms>&limit=`
/// (`rule` exact, `key` a part of the key).
pub async fn notifications(
    State(engine): State<Engine>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (since, until) = match (millis(&q, "since", 0), millis(&q, "until", i64::MAX)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response()
        }
    };
    let text = |name: &str| q.get(name).filter(|s| !s.is_empty()).cloned();
    let query = crate::deliver::NotificationQuery {
        rule: text("rule"),
        key: text("key"),
        since,
        until,
        limit: limit(&q),
    };
    match engine.deliverer.outbox().notifications(query).await {
        Ok(rows) => {
            let items: Vec<Value> = rows
                .iter()
                .map(|(n, ds)| {
                    json!({
                        "id": n.id, "rule": n.rule, "key": n.key, "severity": n.severity, "title": n.title,
                        "summary": n.summary, "count": n.count, "createdAt": n.created_at,
                        "alert": serde_json::from_str::<Value>(&n.alert_json).unwrap_or(Value::Null),
                        "deliveries": ds.iter().map(delivery_json).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Json(json!({ "notifications": items })).into_response()
        }
        Err(e) => server_error(e),
    }
}

/// Deliveries: `?status=pending|failed|dead|delivered&limit=`.
pub async fn deliveries(
    State(engine): State<Engine>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let status = q.get("status").cloned();
    if let Some(s) = &status {
        if !matches!(s.as_str(), "pending" | "failed" | "dead" | "delivered") {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("status {s:?}: use pending, failed, dead or delivered") })),
            )
                .into_response();
        }
    }
    match engine
        .deliverer
        .outbox()
        .deliveries(status, limit(&q))
        .await
    {
        Ok(rows) => {
            Json(json!({ "deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>() }))
                .into_response()
        }
        Err(e) => server_error(e),
    }
}

async fn replay(engine: &Engine, id: Option<String>) -> Response {
    match engine.deliverer.outbox().revive(id.clone(), now_ms()).await {
        Ok(rows) if rows.is_empty() && id.is_some() => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no dead delivery {}", id.unwrap_or_default()) })),
        )
            .into_response(),
        Ok(rows) => {
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            metrics::counter!("tocsin_deliveries_replayed_total").increment(rows.len() as u64);
            engine.deliverer.dispatcher().submit(rows);
            Json(json!({ "replayed": ids })).into_response()
        }
        Err(e) => server_error(e),
    }
}

/// `POST /v1/deliveries/{id}/replay`: one dead letter back to pending.
pub async fn replay_one(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    replay(&engine, Some(id)).await
}

/// `POST /v1/deliveries/replay`: every dead letter back to pending.
pub async fn replay_all(State(engine): State<Engine>) -> Response {
    replay(&engine, None).await
}

/// `GET /v1/events/{id}/trace`: every step of one event, with the
/// deliveries of the notifications it completed and their attempts.
pub async fn trace(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let Some(steps) = engine.traces.get(&id).await else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no trace for event {id:?} (traces are kept for the newest events only)") })),
        )
            .into_response();
    };
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let mut v = serde_json::to_value(&step).unwrap_or(Value::Null);
        if let Some(n) = &step.notification {
            match engine.deliverer.outbox().deliveries_of(n.clone()).await {
                Ok(ds) => v["deliveries"] = Value::Array(ds.iter().map(delivery_json).collect()),
                Err(e) => return server_error(e),
            }
        }
        out.push(v);
    }
    Json(json!({ "event": id, "steps": out })).into_response()
}
