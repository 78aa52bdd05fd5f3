//! `GET /v1/plugins`, `GET /v1/rules`, `GET /v1/policies`, `GET /healthz`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::engine::Engine;

/// Every plugin file: name, world, hash, load time, last error.
pub async fn plugins(State(engine): State<Engine>) -> Json<Value> {
    let catalog = engine.catalog.lock().await;
    Json(json!({ "generation": engine.generation.load().id, "plugins": catalog.plugin_status() }))
}

/// Every rule file: name, plugins, channels, load time, last error; and
/// what the rule's plugins failed (`plugin_errors`) and hold in state here
/// (`state`: keys and estimated bytes, checked against the quotas), and
/// whether it runs isolated after a plugin deadline (`isolated`, see
/// [`crate::pipeline::isolate`]).
pub async fn rules(State(engine): State<Engine>) -> Json<Value> {
    let catalog = engine.catalog.lock().await;
    let rules: Vec<Value> = catalog
        .rule_status()
        .into_iter()
        .map(|r| {
            let failures = crate::pipeline::observe::failures(&r.name);
            let state = engine.state.rule_usage(&r.name);
            let mut v = json!(r);
            v["plugin_errors"] = json!(failures);
            v["state"] = json!(state);
            v["isolated"] = json!(crate::pipeline::isolate::isolation(&r.name, None));
            v
        })
        .collect();
    Json(json!({ "generation": engine.generation.load().id, "rules": rules }))
}

/// `GET /v1/policies`: every policy file of the rules directory (its
/// inhibition rules and time intervals) and why the file on disk is not
/// serving, if it is not.
pub async fn policies(State(engine): State<Engine>) -> Json<Value> {
    let catalog = engine.catalog.lock().await;
    Json(json!({ "generation": engine.generation.load().id, "files": catalog.policy_status() }))
}

/// Liveness: the process serves requests.
pub async fn healthz(State(engine): State<Engine>) -> Json<Value> {
    let g = engine.generation.load();
    Json(
        json!({ "status": "ok", "generation": g.id, "rules": g.rules.len(), "plugins": g.plugins.len() }),
    )
}

/// Readiness: rules loaded and, when configured, RabbitMQ consumed from.
/// 503 with the reason otherwise.
pub async fn readyz(State(engine): State<Engine>) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let g = engine.generation.load();
    let mut reasons = Vec::new();
    if g.id == 0 {
        reasons.push("no rules or plugins loaded yet".to_string());
    }
    if engine.pipeline.is_closed() {
        reasons.push("shutting down".to_string());
    }
    let amqp = engine.amqp.as_ref().map(|a| {
        if !a.connected() {
            reasons.push("RabbitMQ is not connected".to_string());
        }
        a.json()
    });
    // Degraded is still ready: the instance keeps processing on local state.
    let degraded: Vec<String> = engine.state.degraded().into_iter().collect();
    let body = json!({ "ready": reasons.is_empty(), "reasons": reasons, "degraded": degraded, "amqp": amqp, "generation": g.id });
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
