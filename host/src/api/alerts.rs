//! Alertmanager's alert listing, API v2, so `amtool alert query` works
//! against tocsin: `GET /api/v2/alerts` and `GET /api/v2/alerts/groups`
//! list the active alerts ([`crate::active`]) with their state
//! (`active`, or `suppressed` with `silencedBy` when a silence mutes them
//! now). Behind the same token as the silences.
//!
//! Query parameters as Alertmanager's: `filter` (matchers, repeatable),
//! `active`, `silenced`, `inhibited` (booleans, default true) and
//! `receiver` (a regex on the receiver, here the rule's name).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::silences::parse_matcher;
use crate::active::ActiveAlert;
use crate::engine::Engine;
use crate::event::now_ms;
use crate::silence::Matcher;
use crate::source::auth;

/// What a listing asked for.
struct Wanted {
    filters: Vec<Matcher>,
    active: bool,
    silenced: bool,
    receiver: Option<regex::Regex>,
}

fn bad(reason: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(Value::String(reason))).into_response()
}

fn wanted(query: &[(String, String)]) -> Result<Wanted, String> {
    let flag = |name: &str| -> Result<bool, String> {
        match query.iter().rev().find(|(k, _)| k == name) {
            None => Ok(true),
            Some((_, v)) => v
                .parse::<bool>()
                .map_err(|_| format!("{name}: expected true or false, got {v:?}")),
        }
    };
    let mut filters = Vec::new();
    for (_, v) in query.iter().filter(|(k, _)| k == "filter") {
        filters.push(parse_matcher(v).map_err(|e| format!("filter: {e}"))?);
    }
    let receiver = match query.iter().find(|(k, _)| k == "receiver") {
        None => None,
        Some((_, v)) => {
            Some(regex::Regex::new(&format!("^(?:{v})$")).map_err(|e| format!("receiver: {e}"))?)
        }
    };
    // Nothing here is inhibited yet; `inhibited` is read for its errors.
    flag("inhibited")?;
    Ok(Wanted {
        filters,
        active: flag("active")?,
        silenced: flag("silenced")?,
        receiver,
    })
}

/// The alerts `query` asks for, each with the silences muting it now.
async fn select(
    engine: &Engine,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Vec<(ActiveAlert, Vec<String>)>, Response> {
    auth::require_bearer(
        headers,
        super::admin::silences_token(&engine.config),
        "alerts",
    )
    .map_err(IntoResponse::into_response)?;
    let want = wanted(query).map_err(bad)?;
    let alerts = crate::active::list(&engine.state)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, Json(Value::String(e))).into_response())?;
    let now = now_ms();
    Ok(alerts
        .into_iter()
        .filter(|a| {
            want.filters
                .iter()
                .all(|m| m.matches(a.label(&m.name).unwrap_or("")))
                && want.receiver.as_ref().is_none_or(|r| r.is_match(&a.rule))
        })
        .map(|a| {
            let muted = engine.silences.muting(now, |name| a.label(name));
            (a, muted)
        })
        .filter(|(_, muted)| match muted.is_empty() {
            true => want.active,
            false => want.silenced,
        })
        .collect())
}

/// `GET /api/v2/alerts`: Alertmanager's `gettableAlerts`.
pub async fn list(
    State(engine): State<Engine>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    match select(&engine, &headers, &query).await {
        Ok(alerts) => {
            let out: Vec<Value> = alerts.iter().map(|(a, m)| a.to_api(m)).collect();
            Json(out).into_response()
        }
        Err(r) => r,
    }
}

/// `GET /api/v2/alerts/groups`: the same alerts, one group per rule (the
/// receiver), as Alertmanager's `alertGroups`.
pub async fn groups(
    State(engine): State<Engine>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let alerts = match select(&engine, &headers, &query).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut by_rule: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
    for (a, muted) in &alerts {
        by_rule.entry(&a.rule).or_default().push(a.to_api(muted));
    }
    let out: Vec<Value> = by_rule
        .into_iter()
        .map(|(rule, alerts)| {
            json!({ "labels": { "rule": rule }, "receiver": { "name": rule }, "alerts": alerts })
        })
        .collect();
    Json(out).into_response()
}

/// The body of an acknowledgement.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Who takes it (required).
    by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /v1/alerts/{fingerprint}/ack` with `{"by", "comment"}`: "I have
/// it". Until the alert ends (a resolution, `resolve-after`), firing
/// again is recorded, not notified. Answers the alert as listed.
pub async fn ack(
    State(engine): State<Engine>,
    axum::extract::Path(fingerprint): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: AckBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(format!("the body must be {{\"by\", \"comment\"}}: {e}")),
    };
    if body.by.trim().is_empty() {
        return bad("by: say who acknowledges".into());
    }
    let ack = crate::active::Ack {
        by: body.by,
        comment: body.comment,
        at: now_ms(),
    };
    tracing::info!(fingerprint, by = %ack.by, comment = %ack.comment, "alert acknowledged");
    set_ack(&engine, &fingerprint, Some(ack)).await
}

/// `DELETE /v1/alerts/{fingerprint}/ack`: takes the acknowledgement back;
/// the alert notifies again when it fires.
pub async fn unack(
    State(engine): State<Engine>,
    axum::extract::Path(fingerprint): axum::extract::Path<String>,
) -> Response {
    tracing::info!(fingerprint, "alert acknowledgement taken back");
    set_ack(&engine, &fingerprint, None).await
}

async fn set_ack(engine: &Engine, fingerprint: &str, ack: Option<crate::active::Ack>) -> Response {
    match crate::active::acknowledge(&engine.state, fingerprint, ack).await {
        Ok(Some(alert)) => {
            let muted = engine.silences.muting(now_ms(), |name| alert.label(name));
            Json(alert.to_api(&muted)).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(Value::String(format!(
                "no active alert has fingerprint {fingerprint:?} (GET /api/v2/alerts lists them)"
            ))),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(Value::String(e))).into_response(),
    }
}
