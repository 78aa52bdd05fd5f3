//! The webhook receiver: the minimal HTTP endpoint tocsin's `webhook`
//! channel and Alertmanager's `webhook_configs` deliver to.
//!
//! `POST /hook` answers `200` at once and records, per request: the
//! `Idempotency-Key` (tocsin sends one per delivery, so distinct keys are
//! distinct notifications), every payload marker (sequence number and send
//! time, see [`crate::payload`]; the first sighting of a sequence number
//! gives its event→webhook latency) and when it arrived. `GET /stats`
//! returns the tallies (`?raw=1` adds every latency sample), `POST /reset`
//! clears them. Run as `tocsin-loadgen receive`, a process of its own so its
//! CPU is accounted on the generator's side, not the server's.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::clock::mono_ns;
use crate::payload::markers;
use crate::stats::Latency;

#[derive(Default)]
struct Tally {
    posts: u64,
    keys: HashSet<String>,
    seqs: HashSet<u64>,
    /// (seq, event→arrival ns) at each sequence number's first sighting.
    samples: Vec<(u64, u64)>,
    first_post_ns: Option<u64>,
    last_post_ns: u64,
    last_new_key_ns: u64,
    last_new_seq_ns: u64,
}

/// What `GET /stats` answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub posts: u64,
    pub distinct_keys: u64,
    pub distinct_seqs: u64,
    /// Monotonic ns (see [`crate::clock`]) of the first POST; 0 if none.
    pub first_post_ns: u64,
    pub last_post_ns: u64,
    /// When the latest new `Idempotency-Key` arrived.
    pub last_new_key_ns: u64,
    /// When the latest new sequence number arrived.
    pub last_new_seq_ns: u64,
    /// Latency of every sequence number's first sighting.
    pub latency: Latency,
    /// `(seq, ns)` samples, with `?raw=1` only.
    #[serde(default)]
    pub samples: Vec<(u64, u64)>,
}

fn lock(t: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    match t.lock() {
        Ok(g) => g,
        // A panicking handler cannot leave the tally half-updated in a way
        // that matters for counting; keep serving.
        Err(p) => p.into_inner(),
    }
}

impl Tally {
    fn stats(&self, raw: bool) -> Stats {
        Stats {
            posts: self.posts,
            distinct_keys: self.keys.len() as u64,
            distinct_seqs: self.seqs.len() as u64,
            first_post_ns: self.first_post_ns.unwrap_or(0),
            last_post_ns: self.last_post_ns,
            last_new_key_ns: self.last_new_key_ns,
            last_new_seq_ns: self.last_new_seq_ns,
            latency: Latency::from_ns(self.samples.iter().map(|s| s.1).collect()),
            samples: if raw {
                self.samples.clone()
            } else {
                Vec::new()
            },
        }
    }
}

async fn handle(
    tally: Arc<Mutex<Tally>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/hook") => {
            let key = req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, Bytes::new())),
            };
            let now = mono_ns();
            let found = markers(&body);
            let mut t = lock(&tally);
            t.posts += 1;
            t.first_post_ns.get_or_insert(now);
            t.last_post_ns = now;
            if let Some(key) = key {
                if t.keys.insert(key) {
                    t.last_new_key_ns = now;
                }
            }
            for (seq, sent) in found {
                if t.seqs.insert(seq) {
                    t.last_new_seq_ns = now;
                    t.samples.push((seq, now.saturating_sub(sent)));
                }
            }
            Ok(reply(StatusCode::OK, Bytes::new()))
        }
        (Method::GET, "/stats") => {
            let stats = lock(&tally).stats(query.contains("raw=1"));
            let body = serde_json::to_vec(&stats).unwrap_or_default();
            Ok(reply(StatusCode::OK, Bytes::from(body)))
        }
        (Method::POST, "/reset") => {
            *lock(&tally) = Tally::default();
            Ok(reply(StatusCode::OK, Bytes::new()))
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, Bytes::new())),
    }
}

/// Serves on `listener` forever.
pub async fn serve(listener: TcpListener) -> Result<()> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    loop {
        let (stream, _) = listener.accept().await.context("accepting")?;
        let _ = stream.set_nodelay(true);
        let tally = tally.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(tally.clone(), req));
            // A client hanging up mid-request is not our problem.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A client of a running receiver.
pub struct Client {
    conn: crate::http::Conn,
}

impl Client {
    /// Connects to the receiver at `addr`.
    pub async fn connect(addr: &str) -> Result<Self> {
        Ok(Self {
            conn: crate::http::Conn::connect(addr).await?,
        })
    }

    /// Current tallies (`raw`: with every latency sample).
    pub async fn stats(&mut self, raw: bool) -> Result<Stats> {
        let path = if raw { "/stats?raw=1" } else { "/stats" };
        let v = self.conn.get_json(path).await?;
        serde_json::from_value(v).context("receiver /stats is not the expected JSON")
    }

    /// Clears the tallies.
    pub async fn reset(&mut self) -> Result<()> {
        let (status, _) = self.conn.post_json("/reset", Bytes::new()).await?;
        anyhow::ensure!(status == 200, "receiver /reset answered {status}");
        Ok(())
    }
}
