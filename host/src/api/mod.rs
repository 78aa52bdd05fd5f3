//! The HTTP API: event intake, the live WebSocket, status and metrics.

pub mod events;
pub mod metrics;
pub mod status;
pub mod ws;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::engine::Engine;

/// All routes of the API.
pub fn router(engine: Engine) -> Router {
    let limit = engine.config.http.max_body_bytes;
    metrics::install();
    Router::new()
        .route("/v1/events", post(events::post_events))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/plugins", get(status::plugins))
        .route("/v1/rules", get(status::rules))
        .route("/healthz", get(status::healthz))
        .route("/metrics", get(metrics::render))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(engine)
}
