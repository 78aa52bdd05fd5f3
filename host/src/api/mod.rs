//! The HTTP API: the live WebSocket, status, history and metrics, with
//! the event sources' routes ([`crate::source::router`]) merged in.

pub mod admin;
pub mod alerts;
pub mod amqp;
pub mod audit;
pub mod dashboard;
pub mod deliveries;
pub mod metrics;
pub mod silences;
pub mod stats;
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
    crate::telemetry::install();
    let ingest = source::Ingest::new(engine.pipeline.clone(), engine.config.ingest.clone(), limit);
    // Every change an operator makes is recorded ([`audit`]).
    let audited = axum::middleware::from_fn_with_state(engine.clone(), audit::record);
    // What an operator sees and does: behind the admin token when set.
    let admin = Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/plugins", get(status::plugins))
        .route("/v1/channels", get(deliveries::channels))
        .route("/v1/notifications", get(deliveries::notifications))
        .route("/v1/deliveries", get(deliveries::deliveries))
        .route("/v1/events/{id}/trace", get(deliveries::trace))
        .route("/v1/deliveries/replay", post(deliveries::replay_all))
        .route("/v1/deliveries/{id}/replay", post(deliveries::replay_one))
        .route("/v1/rules", get(status::rules))
        .route("/v1/policies", get(status::policies))
        .route("/v1/audit", get(audit::list))
        .route("/v1/stats", get(stats::get))
        .route("/v1/amqp/pause", post(amqp::pause))
        .route("/v1/amqp/resume", post(amqp::resume))
        .route("/v1/amqp/dead", get(amqp::list_dead))
        .route("/v1/amqp/dead/replay", post(amqp::replay_dead))
        .route(
            "/v1/alerts/{fingerprint}/ack",
            post(alerts::ack).delete(alerts::unack),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            engine.clone(),
            admin::guard,
        ))
        .route_layer(audited.clone());
    // Silences check their token themselves (amtool's bearer config).
    let silences = Router::new()
        .route("/api/v2/silences", get(silences::list).post(silences::post))
        .route(
            "/api/v2/silence/{id}",
            get(silences::get).delete(silences::expire),
        )
        .route_layer(audited);
    Router::new()
        .merge(admin)
        .merge(silences)
        .route("/", get(dashboard::index))
        .route("/v1/access", get(admin::access))
        .route("/ui/{name}", get(dashboard::asset))
        .route("/healthz", get(status::healthz))
        .route("/readyz", get(status::readyz))
        .route("/metrics", get(metrics::render))
        .route("/api/v2/alerts", get(alerts::list))
        .route("/api/v2/alerts/groups", get(alerts::groups))
        .with_state(engine)
        .merge(source::router(ingest))
        .layer(DefaultBodyLimit::max(limit))
}

/// Serves the API of `engine` on `listener` until `shutdown` resolves.
pub async fn serve(
    engine: Engine,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "tocsin listening");
    axum::serve(listener, router(engine))
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")
}
