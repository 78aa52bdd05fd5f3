//! The HTTP API: event intake, the live WebSocket, status and metrics.

pub mod deliveries;
pub mod events;
pub mod metrics;
pub mod status;
pub mod ws;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::engine::Engine;
use crate::source;

/// All routes of the API.
pub fn router(engine: Engine) -> Router {
    let limit = engine.config.http.max_body_bytes;
    metrics::install();
    source::init();
    Router::new()
        .route("/v1/events", post(events::post_events))
        // Other tools' protocols (crate::source): Alertmanager v2 API and
        // webhook, Sentry SDK envelopes and events.
        .route("/api/v2/alerts", post(source::alertmanager::post_alerts))
        .route("/api/v2/status", get(source::alertmanager::status))
        .route(
            "/v1/ingest/alertmanager",
            post(source::alertmanager::post_webhook),
        )
        .route("/api/{project}/envelope/", post(source::sentry::envelope))
        .route("/api/{project}/envelope", post(source::sentry::envelope))
        .route("/api/{project}/store/", post(source::sentry::store))
        .route("/api/{project}/store", post(source::sentry::store))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/plugins", get(status::plugins))
        .route("/v1/channels", get(deliveries::channels))
        .route("/v1/notifications", get(deliveries::notifications))
        .route("/v1/deliveries", get(deliveries::deliveries))
        .route("/v1/events/{id}/trace", get(deliveries::trace))
        .route("/v1/deliveries/replay", post(deliveries::replay_all))
        .route("/v1/deliveries/{id}/replay", post(deliveries::replay_one))
        .route("/v1/rules", get(status::rules))
        .route("/healthz", get(status::healthz))
        .route("/readyz", get(status::readyz))
        .route("/metrics", get(metrics::render))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(engine)
}
