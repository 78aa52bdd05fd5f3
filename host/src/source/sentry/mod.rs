//! Sentry SDK intake: `POST /api/{project}/envelope/` and
//! `POST /api/{project}/store/`, so an SDK given the DSN
//! `http://<key>@<tocsin host>/<project>` reports to tocsin.
//!
//! - Auth: the DSN public key, from `X-Sentry-Auth: Sentry sentry_key=...`,
//!   `?sentry_key=`, or an envelope header's `dsn`; checked against
//!   `[ingest] sentry_keys` (empty: any key).
//! - Bodies: plain, gzip, deflate or br; chunked or not (see
//!   [`super::body`]). Envelope items with or without `length`, the last
//!   with or without a trailing newline.
//! - Items of type `event` become events; every other type (session,
//!   client_report, transaction, attachment...) is accepted and ignored.
//!
//! Mapping of an event: the last entry of `exception.values` gives the
//! errorCode (its `type`, as `ZERO_DIVISION_ERROR`, per
//! `[ingest] sentry_exception_code`), the message (`value`) and the stack
//! trace (rendered like Python's, most recent call last). An event without
//! an exception (`capture_message`) has errorCode
//! `[ingest] sentry_message_code` and its `message` / `logentry` text.
//! `level` gives the severity (fatal → critical, error → high, warning →
//! medium, info/debug → low); `server_name`, else tag `service`, else
//! `release` the serviceName (default `sentry-<project>`); tags, release,
//! environment and server_name go to metadata; `user.id` to userId;
//! `timestamp` (RFC 3339 or epoch seconds) to timestamp; `event_id` to the
//! event id.
//!
//! Answers `200 {"id": "<event_id>"}` like Sentry.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

mod envelope;
mod mapping;

pub use envelope::{parse_envelope, Envelope, Item};
pub use mapping::{map_event, screaming_snake, Ctx};

use super::{auth, Ingest};
use crate::event::{now_ms, FieldError};

/// The events' `source`.
const SOURCE: &str = "sentry";

/// Item types Sentry SDKs send that tocsin ignores, by name (others are
/// counted as `other`).
const KNOWN_TYPES: &[&str] = &[
    "session",
    "sessions",
    "client_report",
    "transaction",
    "attachment",
    "profile",
    "profile_chunk",
    "replay_event",
    "replay_recording",
    "check_in",
    "span",
    "log",
    "otel_log",
    "statsd",
    "metric_buckets",
    "user_report",
    "feedback",
    "security",
];

/// `POST /api/{project}/envelope/`.
pub async fn envelope(
    State(ingest): State<Ingest>,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cfg = ingest.config();
    let key = auth::sentry_key(&headers, &query);
    if key.is_some() {
        if let Err(r) = auth::require_sentry_key(&cfg.sentry_keys, key.as_deref(), SOURCE) {
            return r.into_response();
        }
    }
    let bytes = match ingest.read_body(&headers, body, SOURCE).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let envelope = match parse_envelope(&bytes) {
        Ok(e) => e,
        Err(error) => return super::invalid(SOURCE, "envelope", 0, &[error]),
    };
    if key.is_none() {
        let dsn = envelope
            .header
            .get("dsn")
            .and_then(Value::as_str)
            .and_then(auth::dsn_key);
        if let Err(r) = auth::require_sentry_key(&cfg.sentry_keys, dsn.as_deref(), SOURCE) {
            return r.into_response();
        }
    }
    let header_id = envelope.header.get("event_id").and_then(Value::as_str);
    let ctx = Ctx::new(cfg, &project);
    let received_at = now_ms();
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut first_id = None;
    for item in &envelope.items {
        if item.kind != "event" {
            let kind = KNOWN_TYPES
                .iter()
                .find(|k| **k == item.kind)
                .copied()
                .unwrap_or("other");
            metrics::counter!("tocsin_ingest_ignored_total", "source" => SOURCE, "kind" => kind)
                .increment(1);
            continue;
        }
        let value: Value = match serde_json::from_slice(item.payload) {
            Ok(v) => v,
            Err(e) => {
                errors.push(FieldError {
                    item: item.index,
                    field: String::new(),
                    reason: format!("event item is not valid JSON: {e}"),
                });
                continue;
            }
        };
        match map_event(item.index, &value, &ctx, header_id, received_at) {
            Ok((event, id)) => {
                first_id.get_or_insert(id);
                events.push(event);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return super::invalid(SOURCE, "envelope", 0, &errors);
    }
    if let Err(r) = ingest.submit(SOURCE, events).await {
        return r;
    }
    match header_id.map(str::to_string).or(first_id) {
        Some(id) => Json(json!({ "id": id })).into_response(),
        None => Json(json!({})).into_response(),
    }
}

/// `POST /api/{project}/store/`: one event as JSON (older SDKs).
pub async fn store(
    State(ingest): State<Ingest>,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cfg = ingest.config();
    let key = auth::sentry_key(&headers, &query);
    if let Err(r) = auth::require_sentry_key(&cfg.sentry_keys, key.as_deref(), SOURCE) {
        return r.into_response();
    }
    let bytes = match ingest.read_body(&headers, body, SOURCE).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return super::invalid(
                SOURCE,
                "event",
                0,
                &[FieldError {
                    item: 0,
                    field: String::new(),
                    reason: format!("body is not valid JSON: {e}"),
                }],
            )
        }
    };
    let ctx = Ctx::new(cfg, &project);
    match map_event(0, &value, &ctx, None, now_ms()) {
        Ok((event, id)) => match ingest.submit(SOURCE, vec![event]).await {
            Ok(_) => Json(json!({ "id": id })).into_response(),
            Err(r) => r,
        },
        Err(errors) => super::invalid(SOURCE, "event", 0, &errors),
    }
}
