//! A minimal keep-alive HTTP/1.1 client (hyper's connection API, one
//! request at a time per connection) and Prometheus text parsing.
//!
//! Why not reqwest: the generator shares two cores with the server it
//! measures, so it must spend as little CPU per request as it can. A bare
//! hyper connection has no pool, no redirect or proxy logic, and with
//! `TCP_NODELAY` it adds nothing to the latencies it measures.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive connection to `addr` (`host:port`).
pub struct Conn {
    addr: String,
    tx: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects (with `TCP_NODELAY`).
    pub async fn connect(addr: &str) -> Result<Self> {
        let tx = handshake(addr).await?;
        Ok(Self {
            addr: addr.to_string(),
            tx,
        })
    }

    /// Sends one request and reads the whole response. Reconnects first
    /// when the server closed the idle connection.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes)> {
        if self.tx.is_closed() {
            self.tx = handshake(&self.addr).await?;
        }
        self.tx
            .ready()
            .await
            .with_context(|| format!("connection to {} failed", self.addr))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.as_str());
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req.body(Full::new(body)).context("building a request")?;
        let resp = self
            .tx
            .send_request(req)
            .await
            .with_context(|| format!("request to http://{}{path} failed", self.addr))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the response of http://{}{path}", self.addr))?
            .to_bytes();
        Ok((status, body))
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<(u16, Bytes)> {
        self.request(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: impl Into<Bytes>) -> Result<(u16, Bytes)> {
        self.request(Method::POST, path, Some("application/json"), body.into())
            .await
    }

    /// `GET path`, requiring a 2xx, parsed as JSON.
    pub async fn get_json(&mut self, path: &str) -> Result<serde_json::Value> {
        let (status, body) = self.get(path).await?;
        if !(200..300).contains(&status) {
            bail!(
                "GET http://{}{path} answered {status}: {}",
                self.addr,
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("GET http://{}{path}: response is not JSON", self.addr))
    }

    /// The sum of samples of metric `name` with all of `labels`, from
    /// `GET /metrics`.
    pub async fn metric(&mut self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        let (status, body) = self.get("/metrics").await?;
        if status != 200 {
            bail!("GET http://{}/metrics answered {status}", self.addr);
        }
        Ok(metric_value(&String::from_utf8_lossy(&body), name, labels))
    }
}

async fn handshake(addr: &str) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr}"))?;
    tokio::spawn(async move {
        // Ends when the connection closes; errors surface on the next request.
        let _ = conn.await;
    });
    Ok(tx)
}

/// One `GET` on a fresh connection.
pub async fn get(addr: &str, path: &str) -> Result<(u16, Bytes)> {
    Conn::connect(addr).await?.get(path).await
}

/// Polls `GET path` until it answers 200; fails after `within`.
pub async fn wait_ok(addr: &str, path: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let last = match get(addr, path).await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => format!("{status}: {}", String::from_utf8_lossy(&body)),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            return Err(anyhow!(
                "http://{addr}{path} did not answer 200 within {within:?} (last: {last})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The mean of Prometheus histogram `name` (`_sum` ÷ `_count`), if it
/// has any samples.
pub fn histogram_mean(text: &str, name: &str) -> Option<f64> {
    let count = metric_value(text, &format!("{name}_count"), &[]);
    (count > 0.0).then(|| metric_value(text, &format!("{name}_sum"), &[]) / count)
}

/// The sum of every sample of `name` in a Prometheus text exposition whose
/// label set includes every pair of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_matching_series() {
        let text = "# TYPE x counter\nx{rule=\"a\",k=\"1\"} 3\nx{rule=\"b\"} 4\nxy 9\nx 1\n";
        assert_eq!(metric_value(text, "x", &[]), 8.0);
        assert_eq!(metric_value(text, "x", &[("rule", "a")]), 3.0);
        assert_eq!(metric_value(text, "y", &[]), 0.0);
    }
}
