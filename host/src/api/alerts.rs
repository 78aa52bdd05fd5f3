//! Alertmanager's alert listing, API v2, so `amtool alert query` works
//! against tocsin: `GET /api/v2/alerts` and `GET /api/v2/alerts/groups`
//! list the active alerts ([`crate::active`]) with their state
//! (`active`, or `suppressed` with `silencedBy` when a silence mutes them
//! now and `inhibitedBy` when active alerts inhibit them,
//! [`crate::inhibit`]). Behind the same token as the silences.
//!
//! Query parameters as Alertmanager's: `filter` (matchers, repeatable),
//! `active`, `silenced`, `inhibited` (booleans, default true) and
//! `receiver` (a regex on the receiver, here the rule's name).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::active::ActiveAlert;
use crate::engine::Engine;
use crate::event::now_ms;
use crate::silence::parse_matcher;
use crate::silence::Matcher;
use crate::source::auth;

/// What a listing asked for.
struct Wanted {
    filters: Vec<Matcher>,
    active: bool,
    silenced: bool,
    inhibited: bool,
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
    Ok(Wanted {
        filters,
        active: flag("active")?,
        silenced: flag("silenced")?,
        inhibited: flag("inhibited")?,
        receiver,
    })
}

/// An active alert as listed: with the silences muting it now and the
/// active alerts inhibiting it.
struct Listed {
    alert: ActiveAlert,
    silenced_by: Vec<String>,
    inhibited_by: Vec<String>,
}

impl Listed {
    fn to_api(&self) -> Value {
        self.alert.to_api(&self.silenced_by, &self.inhibited_by)
    }
}

/// What mutes each of `alerts` now: silences, and inhibition by the
/// others (every active alert is a possible source).
fn mutes(engine: &Engine, alerts: Vec<ActiveAlert>, all: &[ActiveAlert]) -> Vec<Listed> {
    let now = now_ms();
    let inhibitions = engine.generation.load().inhibitions.clone();
    let prints: Vec<String> = all.iter().map(ActiveAlert::fingerprint).collect();
    alerts
        .into_iter()
        .map(|a| {
            let silenced_by = engine.silences.muting(now, |name| a.label(name));
            let sources = all
                .iter()
                .zip(&prints)
                .map(|(s, f)| crate::inhibit::Source {
                    fingerprint: f,
                    labels: &s.labels,
                });
            let inhibited_by = inhibitions.inhibited_by(&a.fingerprint(), &a.labels, sources);
            Listed {
                alert: a,
                silenced_by,
                inhibited_by,
            }
        })
        .collect()
}

/// The alerts `query` asks for, with what mutes them.
async fn select(
    engine: &Engine,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Vec<Listed>, Response> {
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
    let wanted: Vec<ActiveAlert> = alerts
        .iter()
        .filter(|a| {
            want.filters
                .iter()
                .all(|m| m.matches(a.label(&m.name).unwrap_or("")))
                && want.receiver.as_ref().is_none_or(|r| r.is_match(&a.rule))
        })
        .cloned()
        .collect();
    Ok(mutes(engine, wanted, &alerts)
        .into_iter()
        .filter(|l| {
            let (silenced, inhibited) = (!l.silenced_by.is_empty(), !l.inhibited_by.is_empty());
            (want.active && !silenced && !inhibited)
                || (want.silenced && silenced)
                || (want.inhibited && inhibited)
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
            let out: Vec<Value> = alerts.iter().map(Listed::to_api).collect();
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
    for l in &alerts {
        by_rule.entry(&l.alert.rule).or_default().push(l.to_api());
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
            let all = crate::active::list(&engine.state).await.unwrap_or_default();
            match mutes(engine, vec![alert], &all).pop() {
                Some(l) => Json(l.to_api()).into_response(),
                None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
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
