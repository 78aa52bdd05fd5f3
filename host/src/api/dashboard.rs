//! The admin page at `/`: one HTML page, its scripts and style sheet,
//! embedded in the binary (no build step, nothing to install), that show
//! the live stream and drive the JSON APIs — the overview from
//! `/v1/stats`, alerts with ack and "silence like this", silences, rules
//! and their errors, deliveries, replays, history and traces. The page
//! itself holds no data and is served to anyone; everything it shows
//! comes from the admin APIs, with the token the operator types in (kept
//! in the browser), or open to read when `[http] read_only` says so.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../dashboard/index.html");

/// The files under `/ui/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../dashboard/app.js")),
    ("lib.js", JS, include_str!("../../dashboard/lib.js")),
    (
        "overview.js",
        JS,
        include_str!("../../dashboard/overview.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../dashboard/app.css"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
}

/// `GET /ui/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no {name:?} in the dashboard"),
        )
            .into_response(),
    }
}
