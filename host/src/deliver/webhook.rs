//! Webhook transport: performs the HTTP requests channel plugins queued.
//!
//! Every request carries the delivery id as `Idempotency-Key` (and
//! `X-Tocsin-Delivery`), so a receiver can drop the duplicate that an
//! at-least-once retry may produce.

use std::time::Duration;

use super::retry::{classify_http, Attempt};
use super::HttpRequest;

/// Builds the shared HTTP client (connection pooling, timeouts).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_default()
}

/// Circuit-breaker key of a request: scheme, host and port.
pub fn target(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_string(),
    }
}

/// One attempt of `req`.
pub async fn send(client: &reqwest::Client, delivery_id: &str, req: &HttpRequest) -> Attempt {
    let method = match reqwest::Method::from_bytes(req.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Attempt::Permanent(format!("bad method {:?}", req.method)),
    };
    let mut builder = client
        .request(method, &req.url)
        .header("Idempotency-Key", delivery_id)
        .header("X-Tocsin-Delivery", delivery_id)
        .body(req.body.clone());
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    match builder.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = if resp.status().is_success() {
                String::new()
            } else {
                resp.text().await.unwrap_or_default()
            };
            classify_http(status, &body)
        }
        Err(e) if e.is_builder() => Attempt::Permanent(format!("invalid request: {e}")),
        Err(e) => Attempt::Transient(format!("{e}")),
    }
}
