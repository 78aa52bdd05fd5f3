//! Ingest authentication: bearer tokens (`Authorization: Bearer <token>`)
//! for `POST /v1/events` and the Alertmanager endpoints, and DSN public keys
//! for the Sentry endpoints.
//!
//! A refusal is a `401 {"error": ...}` counted in
//! `tocsin_ingest_unauthorized_total{source}`. Secrets are compared in
//! constant time and never logged.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Compares two secrets without leaking where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A refused request: answered `401 {"error": reason}` with a
/// `WWW-Authenticate` challenge, counted when created.
#[derive(Debug)]
pub struct Unauthorized {
    reason: &'static str,
    challenge: &'static str,
}

impl Unauthorized {
    fn new(source: &'static str, reason: &'static str, challenge: &'static str) -> Self {
        metrics::counter!("tocsin_ingest_unauthorized_total", "source" => source).increment(1);
        tracing::debug!(source, reason, "ingest request refused");
        Self { reason, challenge }
    }
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut r = super::error(StatusCode::UNAUTHORIZED, self.reason);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(self.challenge),
        );
        r
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Requires `Authorization: Bearer <expected>` unless `expected` is empty.
pub fn require_bearer(
    headers: &HeaderMap,
    expected: &str,
    source: &'static str,
) -> Result<(), Unauthorized> {
    if expected.is_empty() {
        return Ok(());
    }
    match bearer(headers) {
        None => Err(Unauthorized::new(
            source,
            "missing bearer token: send `Authorization: Bearer <token>`",
            "Bearer",
        )),
        Some(token) if same_secret(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(Unauthorized::new(source, "invalid bearer token", "Bearer")),
    }
}

/// The `sentry_key` of a request: from `X-Sentry-Auth` (or `Authorization`)
/// `Sentry sentry_key=<key>, sentry_version=7, ...`, else the `sentry_key`
/// query parameter.
pub fn sentry_key(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    for name in ["x-sentry-auth", "authorization"] {
        let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let value = value.trim();
        let fields = match value.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("sentry ") => &value[7..],
            _ => continue,
        };
        for field in fields.split(',') {
            if let Some((k, v)) = field.split_once('=') {
                if k.trim() == "sentry_key" && !v.trim().is_empty() {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    query.get("sentry_key").filter(|k| !k.is_empty()).cloned()
}

/// The public key of a DSN (`http://<key>@host/<project>`), as envelopes
/// from tunnels carry it in their header.
pub fn dsn_key(dsn: &str) -> Option<String> {
    let rest = dsn.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let key = userinfo.split(':').next()?;
    (!key.is_empty()).then(|| key.to_string())
}

/// Accepts `key` if it is one of `accepted`, or if none are configured.
pub fn require_sentry_key(
    accepted: &[String],
    key: Option<&str>,
    source: &'static str,
) -> Result<(), Unauthorized> {
    if accepted.is_empty() {
        return Ok(());
    }
    const CHALLENGE: &str = "Sentry";
    match key {
        None => Err(Unauthorized::new(
            source,
            "missing sentry_key: use a DSN with the public key (X-Sentry-Auth header or ?sentry_key=)",
            CHALLENGE,
        )),
        Some(key)
            if accepted
                .iter()
                .any(|a| same_secret(a.as_bytes(), key.as_bytes())) =>
        {
            Ok(())
        }
        Some(_) => Err(Unauthorized::new(
            source,
            "unknown sentry_key: not one of [ingest] sentry_keys",
            CHALLENGE,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn bearer_tokens() {
        let h = headers(&[("authorization", "Bearer s3cret")]);
        assert!(require_bearer(&h, "s3cret", "t").is_ok());
        assert!(require_bearer(&h, "other", "t").is_err());
        assert!(require_bearer(&HeaderMap::new(), "s3cret", "t").is_err());
        assert!(require_bearer(&HeaderMap::new(), "", "t").is_ok());
        let h = headers(&[("authorization", "bearer   s3cret ")]);
        assert!(require_bearer(&h, "s3cret", "t").is_ok());
        let h = headers(&[("authorization", "Basic s3cret")]);
        assert!(require_bearer(&h, "s3cret", "t").is_err());
    }

    #[test]
    fn sentry_keys_from_header_query_and_dsn() {
        let h = headers(&[(
            "x-sentry-auth",
            "Sentry sentry_key=abc123, sentry_version=7, sentry_client=sentry.python/2.0",
        )]);
        assert_eq!(sentry_key(&h, &HashMap::new()).as_deref(), Some("abc123"));
        let q = HashMap::from([("sentry_key".to_string(), "q1".to_string())]);
        assert_eq!(sentry_key(&HeaderMap::new(), &q).as_deref(), Some("q1"));
        assert_eq!(sentry_key(&HeaderMap::new(), &HashMap::new()), None);
        assert_eq!(
            dsn_key("https://pub@o1.ingest.example/42").as_deref(),
            Some("pub")
        );
        assert_eq!(dsn_key("https://o1.ingest.example/42"), None);
        let keys = vec!["abc123".to_string()];
        assert!(require_sentry_key(&keys, Some("abc123"), "t").is_ok());
        assert!(require_sentry_key(&keys, Some("abc124"), "t").is_err());
        assert!(require_sentry_key(&keys, None, "t").is_err());
        assert!(require_sentry_key(&[], None, "t").is_ok());
    }
}
