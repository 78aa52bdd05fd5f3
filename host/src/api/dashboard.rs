//! The admin page at `/`: one HTML page, a script and a style sheet,
//! embedded in the binary (no build step, nothing to install), that show
//! the live stream and drive the JSON APIs — alerts with ack and "silence
//! like this", silences, rules and their errors, deliveries and replays.
//! The page itself holds no data and is served to anyone; everything it
//! shows comes from the admin APIs, with the token the operator types in
//! (kept in the browser) — so it shows nothing without it.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");

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

/// `GET /ui/app.js`.
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
}

/// `GET /ui/app.css`.
pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
}
