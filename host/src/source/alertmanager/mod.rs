//! Prometheus and Alertmanager intake.
//!
//! - `POST /api/v2/alerts`: Alertmanager's v2 API (`postableAlerts`: an
//!   array of `{labels, annotations, startsAt, endsAt, generatorURL}`), so
//!   Prometheus (`alerting.alertmanagers`) and `amtool alert add` can point
//!   at tocsin. Answers `200` with an empty body, like Alertmanager.
//! - `GET /api/v2/status`: enough of Alertmanager's status for `amtool`'s
//!   version check and other clients.
//! - `POST /v1/ingest/alertmanager`: Alertmanager's webhook payload
//!   (version 4), for a `webhook_configs` receiver pointing at tocsin.
//!
//! Mapping: label `alertname` → errorCode; label `severity` → severity
//! (`critical`, `high`/`error`, `medium`/`warning`, `low`/`info`/`none`;
//! otherwise medium); label `service`, else `job`, else `instance` →
//! serviceName (default `prometheus`); annotation `summary`, else
//! `description`, else (amtool style) label `summary` / `description`,
//! else the alertname → message; `description` →
//! userMessage when the summary was the message; every other label →
//! metadata, every other annotation → metadata `annotation.<name>`,
//! `generatorURL` and the label fingerprint → metadata; `startsAt` →
//! timestamp.
//!
//! The event id is derived from the alert's fingerprint (Prometheus's hash
//! of the label set, or the webhook's `fingerprint`) and `startsAt`, so the
//! same alert posted twice has the same id. Prometheus re-sends firing
//! alerts every minute and Alertmanager re-sends a whole group whenever it
//! changes; a firing alert already seen (within [`super::recent::FIRING_TTL_MS`]) is
//! therefore not submitted again, only counted in
//! `tocsin_ingest_duplicates_total`.
//!
//! A resolved alert (`endsAt` in the past, or webhook `status: resolved`)
//! is not an error: it is counted in `tocsin_resolutions_total{source}` and
//! submitted as an event with `resolved` set (its own id, and `endsAt` in
//! its metadata). Rules that match it notify a resolution through their
//! channels instead of counting it (see [`crate::pipeline::resolve`]).
//!
//! Like Alertmanager, the valid alerts of a batch are kept when others are
//! invalid; the `400` names each invalid item and field.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

mod mapping;

pub use mapping::{label_fingerprint, parse_alerts, resolution_id, stable_id, Parsed};

use super::recent::Seen;
use super::{auth, Ingest};
use crate::event::{now_ms, FieldError};

/// The events' `source`.
const SOURCE: &str = "alertmanager";

/// `POST /api/v2/alerts`.
pub async fn post_alerts(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let value = match read_json(&ingest, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(items) = value.as_array() else {
        return super::invalid(
            SOURCE,
            "alerts",
            0,
            &[FieldError {
                item: 0,
                field: String::new(),
                reason: "expected a JSON array of alerts (Alertmanager's postableAlerts)".into(),
            }],
        );
    };
    if let Err(r) = accept(&ingest, items, false, &[]).await {
        return r;
    }
    // Alertmanager answers an empty 200.
    StatusCode::OK.into_response()
}

/// `POST /v1/ingest/alertmanager`: an Alertmanager webhook notification.
pub async fn post_webhook(
    State(ingest): State<Ingest>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let value = match read_json(&ingest, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let top_error = |field: &str, reason: String| {
        super::invalid(
            SOURCE,
            "webhook payload",
            0,
            &[FieldError {
                item: 0,
                field: field.into(),
                reason,
            }],
        )
    };
    let Some(object) = value.as_object() else {
        return top_error(
            "",
            "expected Alertmanager's webhook payload (a JSON object with `alerts`)".into(),
        );
    };
    if let Some(version) = object.get("version").and_then(Value::as_str) {
        if version != "4" {
            tracing::warn!(
                version,
                "Alertmanager webhook payload version is not 4; reading it as 4"
            );
        }
    }
    let Some(alerts) = object.get("alerts").and_then(Value::as_array) else {
        return top_error("alerts", "is required and must be an array".into());
    };
    let mut extra = Vec::new();
    for (key, name) in [
        ("receiver", "alertmanager.receiver"),
        ("externalURL", "alertmanager.externalURL"),
    ] {
        if let Some(v) = object
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            extra.push((name.to_string(), v.to_string()));
        }
    }
    let outcome = match accept(&ingest, alerts, true, &extra).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    Json(json!({
        "accepted": outcome.events,
        "resolved": outcome.resolutions,
        "duplicates": outcome.duplicates,
    }))
    .into_response()
}

/// `GET /api/v2/status`: Alertmanager's `alertmanagerStatus`.
pub async fn status(State(ingest): State<Ingest>, headers: HeaderMap) -> Response {
    if let Err(r) = auth::require_bearer(&headers, &ingest.config().alertmanager_token, SOURCE) {
        return r.into_response();
    }
    let uptime = super::started()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Json(json!({
        "cluster": { "name": "tocsin", "status": "ready", "peers": [] },
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "tocsin",
            "branch": "",
            "buildUser": "tocsin",
            "buildDate": "",
            "goVersion": "none (tocsin, Alertmanager v2 API subset)",
        },
        "config": { "original": "" },
        "uptime": uptime,
    }))
    .into_response()
}

/// Authenticates, reads and parses the body as JSON.
async fn read_json(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Value, Response> {
    auth::require_bearer(headers, &ingest.config().alertmanager_token, SOURCE)
        .map_err(IntoResponse::into_response)?;
    let bytes = ingest.read_body(headers, body, SOURCE).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        super::invalid(
            SOURCE,
            "alerts",
            0,
            &[FieldError {
                item: 0,
                field: String::new(),
                reason: format!("body is not valid JSON: {e}"),
            }],
        )
    })
}

/// What one request did.
#[derive(Default)]
struct Outcome {
    events: usize,
    resolutions: usize,
    duplicates: usize,
}

impl Outcome {
    fn accepted(&self) -> usize {
        self.events + self.resolutions + self.duplicates
    }
}

/// Drops alerts already seen and submits the new firing and resolved
/// alerts, in order.
/// Reads `items` as alerts (`webhook`: in the webhook payload's shape,
/// with `extra` labels), queues the valid ones, and answers for the
/// invalid ones (after queueing the rest: one bad alert loses no other).
async fn accept(
    ingest: &Ingest,
    items: &[Value],
    webhook: bool,
    extra: &[(String, String)],
) -> Result<Outcome, Response> {
    let (parsed, errors) = parse_alerts(items, webhook, extra, now_ms());
    let outcome = submit(ingest, parsed).await?;
    if !errors.is_empty() {
        return Err(super::invalid(
            SOURCE,
            "alerts",
            outcome.accepted(),
            &errors,
        ));
    }
    Ok(outcome)
}

async fn submit(ingest: &Ingest, parsed: Vec<Parsed>) -> Result<Outcome, Response> {
    let now = now_ms();
    let mut outcome = Outcome::default();
    let mut events = Vec::new();
    let mut ids = Vec::new();
    {
        let mut seen = ingest.recent().lock();
        for p in parsed {
            let state = match p.event.resolved {
                false => Seen::Firing,
                true => Seen::Resolved,
            };
            if !seen.first(&p.alert_id, state, now) {
                outcome.duplicates += 1;
                continue;
            }
            match state {
                Seen::Firing => outcome.events += 1,
                Seen::Resolved => outcome.resolutions += 1,
            }
            ids.push((p.event.event_id.clone(), p.alert_id));
            events.push(p.event);
        }
    }
    if outcome.duplicates > 0 {
        metrics::counter!("tocsin_ingest_duplicates_total", "source" => SOURCE)
            .increment(outcome.duplicates as u64);
    }
    if outcome.resolutions > 0 {
        metrics::counter!("tocsin_resolutions_total", "source" => SOURCE)
            .increment(outcome.resolutions as u64);
    }
    match ingest.submit(SOURCE, events).await {
        Err(r) => {
            ingest
                .recent()
                .lock()
                .forget(ids.iter().map(|(_, alert)| alert.as_str()));
            Err(r)
        }
        // A rule failed to count some: the sender's next re-send of those
        // (Prometheus re-sends every minute) gets through, so the rule
        // tries again; the rules that counted them recognise the ids.
        Ok(failed) => {
            if !failed.is_empty() {
                ingest.recent().lock().forget(
                    ids.iter()
                        .filter(|(event, _)| failed.contains_key(event))
                        .map(|(_, alert)| alert.as_str()),
                );
            }
            Ok(outcome)
        }
    }
}
