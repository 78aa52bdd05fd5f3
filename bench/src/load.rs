//! The load generator's engine: posts events or alerts over a few
//! keep-alive connections, closed-loop (as fast as answers come back) or
//! open-loop (at a fixed rate, whatever the answers do), and collects the
//! notifications that come back on tocsin's WebSocket stream.
//!
//! Open-loop pacing runs on a plain thread with a 1 µs timer slack:
//! tokio's timer has a 1 ms resolution, which at 10k events/s would send
//! bursts of ten every millisecond instead of one every 100 µs. Each
//! request is stamped when it is actually written, and how late that was
//! against its schedule (all connections busy, or the generator starved of
//! CPU) is reported as the pacing lag, so a reader can tell a slow server
//! from a slow generator.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::clock::mono_ns;
use crate::http::Conn;
use crate::payload::{markers, Kind};
use crate::stats::Latency;

/// When to stop sending.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this many events (or alerts).
    Total(u64),
    /// After this long.
    Duration(Duration),
    /// When the flag passed to [`drive`] is set (stdin closed).
    Flag,
}

/// A workload.
#[derive(Clone, Debug)]
pub struct Spec {
    /// `host:port` of the server.
    pub addr: String,
    pub kind: Kind,
    /// Events (alerts) per request.
    pub batch: u64,
    /// Keep-alive connections.
    pub conns: usize,
    pub stop: Stop,
    /// Events per second, open-loop; `None`: closed-loop.
    pub rate: Option<f64>,
}

/// What was sent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sent {
    /// Events (alerts) in requests answered with the success status.
    pub events: u64,
    pub requests: u64,
    /// Requests that failed or got another status.
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first request to the last answer, seconds.
    pub elapsed_s: f64,
    /// Open-loop only: how late requests were written against schedule.
    pub lag: Option<Latency>,
    /// Bytes of the first request body (the payload size readers see).
    pub body_bytes: usize,
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    body_bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert(e);
        }
    }
}

/// Consecutive failures after which a connection gives up (the server
/// is gone; spinning on errors would only burn the CPU we measure).
const MAX_CONSECUTIVE_ERRORS: u32 = 200;

/// One request; returns whether it succeeded.
async fn send_one(
    conn: &mut Conn,
    spec: &Spec,
    seqs: std::ops::Range<u64>,
    counters: &Counters,
) -> bool {
    let n = seqs.end - seqs.start;
    let body = spec.kind.body(seqs, mono_ns());
    let _ = counters.body_bytes.compare_exchange(
        0,
        body.len() as u64,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    counters.requests.fetch_add(1, Ordering::Relaxed);
    match conn.post_json(spec.kind.path(), body).await {
        Ok((status, _)) if status == spec.kind.ok_status() => {
            counters.events.fetch_add(n, Ordering::Relaxed);
            true
        }
        Ok((status, body)) => {
            counters.error(format!(
                "{} answered {status}: {}",
                spec.kind.path(),
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
            false
        }
        Err(e) => {
            counters.error(format!("{e:#}"));
            false
        }
    }
}

/// Sends the workload; `flag` stops a [`Stop::Flag`] workload.
pub async fn drive(spec: &Spec, flag: Arc<AtomicBool>) -> Result<Sent> {
    anyhow::ensure!(spec.batch > 0, "batch must be at least 1");
    anyhow::ensure!(spec.conns > 0, "conns must be at least 1");
    let counters = Arc::new(Counters::default());
    let mut conns = Vec::with_capacity(spec.conns);
    for _ in 0..spec.conns {
        conns.push(Conn::connect(&spec.addr).await?);
    }
    let started = Instant::now();
    let lag = match spec.rate {
        None => {
            closed_loop(spec, conns, counters.clone(), flag).await?;
            None
        }
        Some(rate) => Some(open_loop(spec, rate, conns, counters.clone(), flag).await?),
    };
    let elapsed_s = started.elapsed().as_secs_f64();
    let first_error = counters.first_error.lock().ok().and_then(|f| f.clone());
    Ok(Sent {
        events: counters.events.load(Ordering::Relaxed),
        requests: counters.requests.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        first_error,
        elapsed_s,
        lag,
        body_bytes: counters.body_bytes.load(Ordering::Relaxed) as usize,
    })
}

/// The sequence numbers of request `k`, or `None` past the total.
fn request_seqs(spec: &Spec, k: u64) -> Option<std::ops::Range<u64>> {
    let start = k.checked_mul(spec.batch)?;
    let end = start.checked_add(spec.batch)?;
    match spec.stop {
        Stop::Total(n) if start >= n => None,
        Stop::Total(n) => Some(start..end.min(n)),
        _ => Some(start..end),
    }
}

async fn closed_loop(
    spec: &Spec,
    conns: Vec<Conn>,
    counters: Arc<Counters>,
    flag: Arc<AtomicBool>,
) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let deadline = match spec.stop {
        Stop::Duration(d) => Some(Instant::now() + d),
        _ => None,
    };
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (spec, counters, next, flag) =
            (spec.clone(), counters.clone(), next.clone(), flag.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                if flag.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(());
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(seqs) = request_seqs(&spec, k) else {
                    return Ok(());
                };
                if send_one(&mut conn, &spec, seqs, &counters).await {
                    failures = 0;
                } else {
                    failures += 1;
                    if failures >= MAX_CONSECUTIVE_ERRORS {
                        bail!("{failures} requests in a row failed; stopping");
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("a sender task panicked")??;
    }
    Ok(())
}

async fn open_loop(
    spec: &Spec,
    rate: f64,
    conns: Vec<Conn>,
    counters: Arc<Counters>,
    flag: Arc<AtomicBool>,
) -> Result<Latency> {
    anyhow::ensure!(rate > 0.0, "rate must be positive");
    let interval = Duration::from_secs_f64(spec.batch as f64 / rate);
    let (tx, rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let pacer_spec = spec.clone();
    let pacer_flag = flag.clone();
    let pacer = std::thread::spawn(move || {
        // Sleep precisely: the default 50 µs slack would smear the schedule.
        // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong, 0, 0, 0);
        }
        let start = Instant::now();
        let mut k: u64 = 0;
        loop {
            let at = start + interval.mul_f64(k as f64);
            let stop = match pacer_spec.stop {
                Stop::Duration(d) => at >= start + d,
                Stop::Flag => pacer_flag.load(Ordering::Relaxed),
                Stop::Total(_) => request_seqs(&pacer_spec, k).is_none(),
            };
            if stop {
                return;
            }
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send((k, at)).is_err() {
                return;
            }
            k += 1;
        }
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (spec, counters, rx) = (spec.clone(), counters.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut lags = Vec::new();
            let mut failures = 0u32;
            loop {
                let next = rx.lock().await.recv().await;
                let Some((k, at)) = next else {
                    return Ok(lags);
                };
                lags.push(at.elapsed().as_nanos() as u64);
                let Some(seqs) = request_seqs(&spec, k) else {
                    continue;
                };
                if send_one(&mut conn, &spec, seqs, &counters).await {
                    failures = 0;
                } else {
                    failures += 1;
                    if failures >= MAX_CONSECUTIVE_ERRORS {
                        bail!("{failures} requests in a row failed; stopping");
                    }
                }
            }
        }));
    }
    let mut lags = Vec::new();
    let mut failure = None;
    for t in tasks {
        match t.await.context("a sender task panicked")? {
            Ok(l) => lags.extend(l),
            Err(e) => failure = Some(e),
        }
    }
    // Senders gone: the pacer's next send fails and it returns.
    drop(rx);
    if pacer.join().is_err() {
        bail!("the pacing thread panicked");
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Latency::from_ns(lags))
}

/// A WebSocket client of tocsin's `/v1/ws`, recording for each sequence
/// number the first frame that carries it.
pub struct WsCollector {
    samples: Arc<Mutex<Vec<(u64, u64)>>>,
    /// Each new sequence number as it arrives (for one-at-a-time runs).
    pub arrivals: mpsc::UnboundedReceiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl WsCollector {
    /// Connects to `ws://addr/v1/ws<query>`.
    pub async fn connect(addr: &str, query: &str) -> Result<Self> {
        let url = format!("ws://{addr}/v1/ws{query}");
        let (stream, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (tx, arrivals) = mpsc::unbounded_channel();
        let store = samples.clone();
        let task = tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut stream = stream;
            while let Some(msg) = stream.next().await {
                let now = mono_ns();
                let text = match msg {
                    Ok(Message::Text(t)) => t,
                    Ok(_) => continue,
                    Err(_) => return,
                };
                for (seq, sent) in markers(text.as_bytes()) {
                    if seen.insert(seq) {
                        if let Ok(mut s) = store.lock() {
                            s.push((seq, now.saturating_sub(sent)));
                        }
                        let _ = tx.send(seq);
                    }
                }
            }
        });
        Ok(Self {
            samples,
            arrivals,
            task,
        })
    }

    /// Distinct sequence numbers received so far.
    pub fn received(&self) -> usize {
        self.samples.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Waits until `n` distinct sequence numbers arrived or `within` passed.
    pub async fn wait_for(&self, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while (self.received() as u64) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every `(seq, latency ns)` so far.
    pub fn samples(&self) -> Vec<(u64, u64)> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for WsCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Latency of the samples whose sequence number is at least `from`
/// (earlier ones are warm-up).
pub fn latency_from(samples: &[(u64, u64)], from: u64) -> Latency {
    Latency::from_ns(
        samples
            .iter()
            .filter(|(seq, _)| *seq >= from)
            .map(|(_, ns)| *ns)
            .collect(),
    )
}
