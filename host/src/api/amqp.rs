//! `POST /v1/amqp/pause` and `POST /v1/amqp/resume`: hold the RabbitMQ
//! consumer (broker maintenance, a plugin being fixed) and let it go on.
//! Paused, nothing is taken or lost: messages wait in the queue, and the
//! backlog alerts (`TOCSIN_AMQP_BACKLOG`, `TOCSIN_AMQP_LAG`) still fire.
//!
//! `GET /v1/amqp/dead` lists the dead letters (`<queue>.dead`) without
//! taking them; `POST /v1/amqp/dead/replay` with a [`Filter`] publishes
//! the matching ones again ([`crate::source::amqp::dlq`]).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::engine::Engine;
use crate::source::amqp::dlq::Filter;

fn no_consumer() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "no RabbitMQ consumer: [amqp] url is not set" })),
    )
        .into_response()
}

/// `GET /v1/amqp/dead` parameters: a [`Filter`] in the query, one id.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListQuery {
    pub id: Option<String>,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub code: Option<String>,
    pub max_age_ms: Option<u64>,
    pub limit: Option<usize>,
}

/// `GET /v1/amqp/dead?reason=&rule=&code=&maxAgeMs=&id=&limit=`.
pub async fn list_dead(State(engine): State<Engine>, Query(q): Query<ListQuery>) -> Response {
    let Some(dead) = engine.dead_letters.as_deref() else {
        return no_consumer();
    };
    let filter = Filter {
        ids: q.id.into_iter().collect(),
        reason: q.reason,
        rule: q.rule,
        code: q.code,
        max_age_ms: q.max_age_ms,
        all: false,
    };
    match dead.list(&filter, q.limit.unwrap_or(1000)).await {
        Ok(l) => Json(json!({ "queue": dead.queue(), "total": l.total, "letters": l.letters }))
            .into_response(),
        Err(e) => crate::source::error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// `POST /v1/amqp/dead/replay` with a [`Filter`] body (`{"all": true}`
/// for every letter); answers what was replayed.
pub async fn replay_dead(
    State(engine): State<Engine>,
    headers: HeaderMap,
    Json(filter): Json<Filter>,
) -> Response {
    let Some(dead) = engine.dead_letters.as_deref() else {
        return no_consumer();
    };
    if filter.is_empty() {
        return crate::source::error(
            StatusCode::BAD_REQUEST,
            "say which dead letters: ids, reason, rule, code, maxAgeMs, or all: true",
        );
    }
    let who = headers
        .get("x-tocsin-user")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("api");
    let by = format!("hand:{who}");
    let pick = |l: &crate::source::amqp::dead::DeadLetter| filter.matches(l);
    match dead.replay(&pick, &by, None).await {
        Ok(r) => Json(json!(r)).into_response(),
        Err(e) => crate::source::error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// `POST /v1/amqp/pause`.
pub async fn pause(State(engine): State<Engine>) -> Response {
    set(&engine, true)
}

/// `POST /v1/amqp/resume`.
pub async fn resume(State(engine): State<Engine>) -> Response {
    set(&engine, false)
}

fn set(engine: &Engine, paused: bool) -> Response {
    let Some(amqp) = &engine.amqp else {
        return no_consumer();
    };
    amqp.backlog.set_paused(paused);
    tracing::info!(paused, "RabbitMQ consumer paused or resumed by the API");
    Json(json!({ "paused": paused, "backlog": amqp.backlog.read() })).into_response()
}
