//! `GET /v1/plugins`, `GET /v1/rules`, `GET /healthz`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::engine::Engine;

/// Every plugin file: name, world, hash, load time, last error.
pub async fn plugins(State(engine): State<Engine>) -> Json<Value> {
    let catalog = engine.catalog.lock().await;
    Json(json!({ "generation": engine.generation.load().id, "plugins": catalog.plugin_status() }))
}

/// Every rule file: name, plugins, channels, load time, last error.
pub async fn rules(State(engine): State<Engine>) -> Json<Value> {
    let catalog = engine.catalog.lock().await;
    Json(json!({ "generation": engine.generation.load().id, "rules": catalog.rule_status() }))
}

/// Liveness: the process serves requests.
pub async fn healthz(State(engine): State<Engine>) -> Json<Value> {
    let g = engine.generation.load();
    Json(
        json!({ "status": "ok", "generation": g.id, "rules": g.rules.len(), "plugins": g.plugins.len() }),
    )
}
