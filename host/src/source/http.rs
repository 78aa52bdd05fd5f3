//! `POST /v1/events`: one event or an array, in the seed's format.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{auth, Ingest};
use crate::event::{now_ms, parse_batch};

const SOURCE: &str = "http";

/// Validates the whole batch, then queues it: `202 {"accepted": n}`, or
/// `400` listing every bad item and field with nothing accepted. A `202`
/// lists under `failed` the events a rule's plugin failed to count (they
/// are durable for every other rule; sending them again is safe). With
/// `[ingest] token` set, requires `Authorization: Bearer <token>` (`401`).
/// Bodies may be compressed; too large ones get `413`.
pub async fn post_events(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = auth::require_bearer(&headers, &ingest.config().token, SOURCE) {
        return r.into_response();
    }
    let body = match ingest.read_body(&headers, body, SOURCE).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let source: Arc<str> = Arc::from(SOURCE);
    match parse_batch(&body, &source, now_ms()) {
        Ok(events) => {
            let n = events.len();
            let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
            match ingest.submit(SOURCE, events).await {
                Ok(failed) if failed.is_empty() => (
                    StatusCode::ACCEPTED,
                    Json(json!({ "accepted": n, "ids": ids })),
                )
                    .into_response(),
                // Durable, and counted by every other rule: a re-send is
                // safe and lets the failing rule try again.
                Ok(failed) => {
                    let failed: Vec<_> = ids
                        .iter()
                        .filter_map(|id| {
                            failed
                                .get(id)
                                .map(|e| json!({ "id": id, "error": e.error }))
                        })
                        .collect();
                    (
                        StatusCode::ACCEPTED,
                        Json(json!({ "accepted": n, "ids": ids, "failed": failed })),
                    )
                        .into_response()
                }
                Err(r) => r,
            }
        }
        Err(errors) => {
            metrics::counter!("tocsin_events_rejected_total", "source" => SOURCE).increment(1);
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "invalid events; none were accepted", "accepted": 0, "errors": errors })),
            )
                .into_response()
        }
    }
}
