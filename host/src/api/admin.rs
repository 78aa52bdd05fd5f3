//! The admin token (`[http] admin_token`, `TOCSIN_HTTP_ADMIN_TOKEN`): what
//! an operator's tools and the dashboard use. When set, it guards every
//! view of what tocsin holds (history, deliveries, traces, rules and
//! plugins, the live stream) and every action (replays, silences); only
//! `/healthz`, `/readyz` and `/metrics` stay open, for probes and
//! scrapers. Ingest has its own tokens (`[ingest]`). Unset, nothing is
//! guarded: fine on a loopback address, refused elsewhere unless the
//! operator says `--insecure` ([`exposure`]).
//!
//! `[http] read_only = true` opens the views (every `GET`, the live
//! stream included) to anyone who reaches the port, for a wall screen;
//! actions still need the token. `GET /v1/access` tells the page which
//! it may do ([`access`]).

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::engine::Engine;
use crate::source::auth;

/// The label of refusals in `tocsin_ingest_unauthorized_total{source}`.
const WHAT: &str = "admin";

/// Middleware on the admin routes: `Authorization: Bearer <admin token>`,
/// or `?token=` (a browser cannot set headers on a WebSocket).
pub async fn guard(State(engine): State<Engine>, req: Request, next: Next) -> Response {
    if readable(&engine.config, req.method()) {
        return next.run(req).await;
    }
    match check(&engine.config.http.admin_token, req.headers(), req.uri()) {
        Ok(()) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}

/// Whether `method` is a read the configuration opens to everyone
/// (`[http] read_only`).
pub fn readable(config: &Config, method: &axum::http::Method) -> bool {
    config.http.read_only
        && (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
}

/// `GET /v1/access`: whether the caller's token is the admin token (it
/// may act) and whether views are open without one; the page shows or
/// hides its buttons by it. Open: it tells nothing but the setting.
pub async fn access(State(engine): State<Engine>, req: Request) -> Response {
    let token = &engine.config.http.admin_token;
    let admin = token.is_empty() || check(token, req.headers(), req.uri()).is_ok();
    axum::Json(serde_json::json!({
        "admin": admin,
        "read": admin || engine.config.http.read_only,
        "readOnly": engine.config.http.read_only,
        "tokenSet": !token.is_empty(),
    }))
    .into_response()
}

fn check(
    token: &str,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<(), auth::Unauthorized> {
    let refused = match auth::require_bearer(headers, token, WHAT) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let query: Option<Query<HashMap<String, String>>> = Query::try_from_uri(uri).ok();
    let given = query.as_ref().and_then(|q| q.get("token"));
    match given {
        Some(t) if auth::same_secret(t.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(refused),
    }
}

/// The token the silence API asks for: the admin token when one is set
/// (silences are an operator's action), otherwise the Alertmanager API's
/// (so `amtool` keeps one token).
pub fn silences_token(config: &Config) -> &str {
    if config.http.admin_token.is_empty() {
        &config.ingest.alertmanager_token
    } else {
        &config.http.admin_token
    }
}

/// Why `config` must not start without `--insecure`: it listens on an
/// address other machines can reach with no ingest token or no admin
/// token, so anyone there could post events, read the history or replay
/// deliveries. `None` when it is loopback or guarded.
pub fn exposure(config: &Config) -> Option<String> {
    let listen = config.http.listen.trim();
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return None;
    }
    let mut missing = Vec::new();
    if config.ingest.token.is_empty() {
        missing.push("[ingest] token (TOCSIN_INGEST_TOKEN)");
    }
    if config.http.admin_token.is_empty() {
        missing.push("[http] admin_token (TOCSIN_HTTP_ADMIN_TOKEN)");
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "refusing to listen on {listen}, which other machines can reach, without {}: set them, listen on 127.0.0.1, or pass --insecure",
        missing.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, ingest: &str, admin: &str) -> Config {
        let mut c = Config::default();
        c.http.listen = listen.into();
        c.ingest.token = ingest.into();
        c.http.admin_token = admin.into();
        c
    }

    #[test]
    fn only_a_reachable_unguarded_listen_is_refused() {
        assert!(exposure(&config("127.0.0.1:8080", "", "")).is_none());
        assert!(exposure(&config("localhost:8080", "", "")).is_none());
        assert!(exposure(&config("[::1]:8080", "", "")).is_none());
        let open = exposure(&config("0.0.0.0:8080", "", "")).expect("refused");
        assert!(
            open.contains("[ingest] token") && open.contains("admin_token"),
            "{open}"
        );
        let half = exposure(&config("10.0.0.5:8080", "i", "")).expect("refused");
        assert!(
            !half.contains("[ingest] token") && half.contains("admin_token"),
            "{half}"
        );
        assert!(exposure(&config("0.0.0.0:8080", "i", "a")).is_none());
    }

    #[test]
    fn the_token_in_a_header_or_the_query() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().expect("uri");
        let mut headers = HeaderMap::new();
        assert!(check("s3cret", &headers, &uri("/v1/rules")).is_err());
        assert!(check("s3cret", &headers, &uri("/v1/ws?token=s3cret")).is_ok());
        assert!(check("s3cret", &headers, &uri("/v1/ws?token=wrong")).is_err());
        headers.insert("authorization", "Bearer s3cret".parse().expect("header"));
        assert!(check("s3cret", &headers, &uri("/v1/rules")).is_ok());
        assert!(check("", &HeaderMap::new(), &uri("/v1/rules")).is_ok());
    }
}
