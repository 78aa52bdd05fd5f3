//! `GET /v1/stats?range=1h|24h|7d`: what the dashboard's overview draws
//! ([`crate::stats::report`]), from the whole cluster's buckets.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::engine::Engine;
use crate::stats::report::Range;

/// `GET /v1/stats`.
pub async fn get(
    State(engine): State<Engine>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let asked = q.get("range").map(String::as_str).unwrap_or("1h");
    let Some(range) = Range::parse(asked) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("range: {asked:?} is not one of 1h, 24h, 7d") })),
        )
            .into_response();
    };
    if !engine.stats.enabled() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "stats are off ([engine] stats = false)" })),
        )
            .into_response();
    }
    match engine.stats.report(range).await {
        Ok(report) => Json(report.as_ref().clone()).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e }))).into_response(),
    }
}
