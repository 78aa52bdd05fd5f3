//! Alertmanager's silence API v2, so `amtool silence …` works against
//! tocsin: `GET/POST /api/v2/silences`, `GET/DELETE /api/v2/silence/{id}`.
//! Behind the admin token when one is set, otherwise the Alertmanager
//! API's (`[ingest] alertmanager_token`), like the rest of `/api/v2`. Errors are JSON strings, as Alertmanager
//! answers them (amtool prints them).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::event::now_ms;
use crate::silence::{parse_matcher, PostableSilence, SilenceError};
use crate::source::auth;

const WHAT: &str = "silences";

fn guard(engine: &Engine, headers: &HeaderMap) -> Result<(), auth::Unauthorized> {
    auth::require_bearer(headers, super::admin::silences_token(&engine.config), WHAT)
}

/// The guard of the listings: open too when `[http] read_only` is set.
fn read_guard(engine: &Engine, headers: &HeaderMap) -> Result<(), auth::Unauthorized> {
    if super::admin::readable(&engine.config, &axum::http::Method::GET) {
        return Ok(());
    }
    auth::require_bearer(headers, super::admin::silences_token(&engine.config), WHAT)
}

fn error(e: SilenceError) -> Response {
    let status = match &e {
        SilenceError::NotFound(_) => StatusCode::NOT_FOUND,
        SilenceError::Invalid(_) | SilenceError::AlreadyExpired(_) => StatusCode::BAD_REQUEST,
        SilenceError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(Value::String(e.to_string()))).into_response()
}

/// `GET /api/v2/silences[?filter=…]`: every silence, or those whose
/// equality matchers satisfy each `filter` matcher (`service="db"`), as
/// Alertmanager filters them.
pub async fn list(
    State(engine): State<Engine>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = read_guard(&engine, &headers) {
        return r.into_response();
    }
    let mut filters = Vec::new();
    for (k, v) in query.iter().filter(|(k, _)| k == "filter") {
        match parse_matcher(v) {
            Ok(m) => filters.push(m),
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(Value::String(format!("{k}: {e}"))),
                )
                    .into_response()
            }
        }
    }
    let now = now_ms();
    let out: Vec<Value> = engine
        .silences
        .list()
        .iter()
        .filter(|s| {
            filters.iter().all(|f| {
                let value = s
                    .matchers
                    .iter()
                    .find(|m| m.name == f.name && m.is_equal && !m.is_regex)
                    .map_or("", |m| m.value.as_str());
                f.matches(value)
            })
        })
        .map(|s| s.to_api(now))
        .collect();
    Json(out).into_response()
}

/// `POST /api/v2/silences`: creates or updates; answers `{"silenceID"}`.
pub async fn post(State(engine): State<Engine>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = guard(&engine, &headers) {
        return r.into_response();
    }
    let post: PostableSilence = match serde_json::from_str(&body) {
        Ok(p) => p,
        Err(e) => return error(SilenceError::Invalid(format!("body: {e}"))),
    };
    match engine.silences.upsert(post).await {
        Ok(id) => Json(json!({ "silenceID": id })).into_response(),
        Err(e) => error(e),
    }
}

/// `GET /api/v2/silence/{id}`.
pub async fn get(
    State(engine): State<Engine>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = read_guard(&engine, &headers) {
        return r.into_response();
    }
    match engine.silences.get(&id) {
        Some(s) => Json(s.to_api(now_ms())).into_response(),
        None => error(SilenceError::NotFound(id)),
    }
}

/// `DELETE /api/v2/silence/{id}`: expires it now.
pub async fn expire(
    State(engine): State<Engine>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = guard(&engine, &headers) {
        return r.into_response();
    }
    match engine.silences.expire(&id).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(e),
    }
}
