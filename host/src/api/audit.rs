//! The audit log's HTTP side ([`crate::audit`]): the middleware in front
//! of every admin route that records each request changing something, and
//! `GET /v1/audit?limit=` (newest first, behind the admin token).

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::audit::{actor_in, body_value, AuditEntry};
use crate::engine::Engine;

/// The most an answer is read for the log (answers of admin actions are
/// small; a larger one is logged cut).
const ANSWER_BYTES: usize = 64 * 1024;

/// Records `req` in the audit log when it changes something (any method
/// but `GET`, `HEAD` and `OPTIONS`) and was not refused for want of the
/// token (refusals are not actions, and must not push real ones out).
pub async fn record(State(engine): State<Engine>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let action = format!("{} {}", req.method(), req.uri().path());
    let header = req
        .headers()
        .get("x-tocsin-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty());
    let (parts, body) = req.into_parts();
    let limit = engine.config.http.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let why = format!("request body over {limit} bytes or unreadable: {e}");
            return (StatusCode::PAYLOAD_TOO_LARGE, Json(json!({ "error": why }))).into_response();
        }
    };
    let request = body_value(&bytes);
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = response.status();
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let answer = axum::body::to_bytes(body, ANSWER_BYTES)
        .await
        .unwrap_or_default();
    let actor = header
        .or_else(|| actor_in(&request))
        .unwrap_or_else(|| "unknown".into());
    let entry = AuditEntry {
        at: crate::event::now_ms(),
        actor,
        action,
        status: status.as_u16(),
        request,
        answer: body_value(&answer),
    };
    crate::audit::record(&engine.state, entry).await;
    Response::from_parts(parts, Body::from(answer))
}

/// `GET /v1/audit?limit=N` (default 100, at most the log's size).
pub async fn list(
    State(engine): State<Engine>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let limit = match q.get("limit").map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) => n.min(crate::audit::KEEP),
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "limit: a number of entries" })),
            )
                .into_response()
        }
    };
    let entries = crate::audit::list(&engine.state, limit).await;
    Json(json!({ "entries": entries })).into_response()
}
