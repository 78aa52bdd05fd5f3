//! Event sources, one module each. An HTTP source gets an [`Ingest`]
//! handle (submit, settings, body limit), never the engine; [`router`]
//! mounts them all.
//!
//! - [`http`]: the seed's format (`POST /v1/events`).
//! - [`amqp`]: the RabbitMQ consumer (at least once, dedup on redelivery,
//!   bounded retries, dead letters, reconnects), its backlog and pausing,
//!   and its dead letters: listing, replay and the recovery loop.
//! - [`alertmanager`]: Alertmanager's v2 API (`POST /api/v2/alerts`,
//!   `GET /api/v2/status`), so Prometheus and `amtool` can send alerts, and
//!   Alertmanager's webhook payload (`POST /v1/ingest/alertmanager`).
//! - [`sentry`]: the Sentry ingestion API (`/api/{project}/envelope/` and
//!   `/api/{project}/store/`), so Sentry SDKs deliver to a tocsin DSN.
//! - [`auth`]: bearer tokens and Sentry DSN keys.
//! - [`body`]: reading bodies: size limit, gzip/deflate/br, decompression
//!   bombs.
//!
//! Every receiver turns its input into [`crate::event::Event`]s validated by
//! [`crate::event::parse_event`] (so one set of rules decides what a valid
//! event is) and submits them to the [`crate::pipeline::PipelineHandle`].
//!
//! **What an HTTP source's answer promises.** A `202` (`200` on the
//! Alertmanager and Sentry endpoints) comes only once the events went
//! through the pipeline and everything they caused (counters, dedup
//! marks, notifications and their deliveries) is on disk, or committed to
//! Redis: a crash after it loses none of them. A crash before it may have
//! counted some; the sender retries with the same ids (`eventId`, the
//! Alertmanager alert, the Sentry event id) and rules that counted them
//! recognise them. Many requests waiting at once share one commit (the
//! state store's group commit), so the wait is about one fsync.

pub mod alertmanager;
pub mod amqp;
pub mod auth;
pub mod body;
pub mod http;
pub mod ingest;
pub mod recent;
pub mod sentry;

pub use ingest::Ingest;

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::event::FieldError;

/// The routes of every HTTP source, on `ingest`.
pub fn router(ingest: Ingest) -> Router {
    init();
    Router::new()
        .route("/v1/events", post(http::post_events))
        // Other tools' protocols: Alertmanager v2 API and webhook, Sentry
        // SDK envelopes and events.
        .route("/api/v2/alerts", post(alertmanager::post_alerts))
        .route("/api/v2/status", get(alertmanager::status))
        .route("/v1/ingest/alertmanager", post(alertmanager::post_webhook))
        .route("/api/{project}/envelope/", post(sentry::envelope))
        .route("/api/{project}/envelope", post(sentry::envelope))
        .route("/api/{project}/store/", post(sentry::store))
        .route("/api/{project}/store", post(sentry::store))
        .with_state(ingest)
}

static STARTED: OnceLock<time::OffsetDateTime> = OnceLock::new();

/// Records the process start time (reported as Alertmanager's `uptime`).
/// Called when the API router is built.
pub fn init() {
    STARTED.get_or_init(time::OffsetDateTime::now_utc);
}

/// When [`init`] was first called.
pub fn started() -> time::OffsetDateTime {
    *STARTED.get_or_init(time::OffsetDateTime::now_utc)
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `400` listing every bad item and field; counted as a rejected request.
pub fn invalid(
    source: &'static str,
    what: &str,
    accepted: usize,
    errors: &[FieldError],
) -> Response {
    metrics::counter!("tocsin_events_rejected_total", "source" => source).increment(1);
    let summary = if accepted == 0 {
        format!("invalid {what}; none were accepted")
    } else {
        format!("invalid {what}; the {accepted} valid one(s) were accepted")
    };
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": summary, "accepted": accepted, "errors": errors })),
    )
        .into_response()
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the
/// cut. Producers we do not control (SDKs) get their long texts shortened
/// rather than the whole event refused.
pub fn truncate(mut text: String, max: usize) -> String {
    const MARK: &str = " …[truncated]";
    if text.len() <= max {
        return text;
    }
    let mut cut = max.saturating_sub(MARK.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(MARK);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries_and_limit() {
        assert_eq!(truncate("short".into(), 10), "short");
        let long = "é".repeat(100);
        let t = truncate(long, 51);
        assert!(t.len() <= 51, "{}", t.len());
        assert!(t.ends_with("[truncated]"));
    }
}
