//! `tocsin:plugin/http`: queue an outbound request, only to granted hosts.

use crate::deliver::{Delivery, HttpRequest};
use crate::plugin::bindings::channel::tocsin::plugin::http::{Host, Request};
use crate::plugin::HostCtx;

/// Largest request (body and headers) a plugin may queue.
const MAX_BODY: usize = 1024 * 1024;

/// True when the URL's host (or `host:port`) matches a grant: exact, or
/// `*.domain` for any subdomain.
pub fn host_granted(grants: &[String], url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let with_port = url
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"))
        .unwrap_or_else(|| host.clone());
    grants.iter().any(|g| {
        let g = g.trim().to_ascii_lowercase();
        match g.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => g == host || g == with_port,
        }
    })
}

impl Host for HostCtx {
    fn send(&mut self, request: Request) -> Result<(), String> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| format!("http request refused: bad URL {:?}: {e}", request.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "http request refused: scheme {:?} is not http(s)",
                url.scheme()
            ));
        }
        if !host_granted(&self.scope.grants.http, &url) {
            return Err(format!(
                "http request to {:?} refused: host not granted by rule `{}` (grants.http = {:?})",
                url.host_str().unwrap_or(""),
                self.scope.rule,
                self.scope.grants.http
            ));
        }
        let method = request.method.to_ascii_uppercase();
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(format!("http request refused: bad method {method:?}"));
        }
        let bytes = request.body.len()
            + request
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        let delivery = Delivery::Http(HttpRequest {
            method,
            url: url.to_string(),
            headers: request.headers,
            body: request.body,
        });
        self.queue_delivery("http request", bytes, MAX_BODY, delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::host_granted;

    #[test]
    fn grants_match_host_port_and_subdomains() {
        let g = vec![
            "hooks.slack.com".to_string(),
            "127.0.0.1:9000".to_string(),
            "*.corp.io".to_string(),
        ];
        let ok = |u: &str| host_granted(&g, &reqwest::Url::parse(u).expect("url"));
        assert!(ok("https://hooks.slack.com/services/x"));
        assert!(ok("http://127.0.0.1:9000/hook"));
        assert!(!ok("http://127.0.0.1:9001/hook"));
        assert!(ok("https://a.corp.io/"));
        assert!(!ok("https://corp.io.evil.com/"));
    }
}
