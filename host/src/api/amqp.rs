//! `POST /v1/amqp/pause` and `POST /v1/amqp/resume`: hold the RabbitMQ
//! consumer (broker maintenance, a plugin being fixed) and let it go on.
//! Paused, nothing is taken or lost: messages wait in the queue, and the
//! backlog alerts (`TOCSIN_AMQP_BACKLOG`, `TOCSIN_AMQP_LAG`) still fire.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::engine::Engine;

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
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no RabbitMQ consumer: [amqp] url is not set" })),
        )
            .into_response();
    };
    amqp.backlog.set_paused(paused);
    tracing::info!(paused, "RabbitMQ consumer paused or resumed by the API");
    Json(json!({ "paused": paused, "backlog": amqp.backlog.read() })).into_response()
}
