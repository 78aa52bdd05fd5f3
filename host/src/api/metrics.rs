//! `GET /metrics` in the Prometheus text format.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::engine::Engine;

/// Renders every metric.
pub async fn render(State(engine): State<Engine>) -> impl IntoResponse {
    metrics::gauge!("tocsin_state_keys").set(engine.state.len().await as f64);
    metrics::gauge!("tocsin_ws_clients").set(engine.hub.clients() as f64);
    let body = crate::telemetry::install()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
