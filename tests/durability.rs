//! What an HTTP `202` promises, held to under the worst stops: SIGKILL
//! under 10k events/s of HTTP load, and SIGTERM under load with deliveries
//! in flight, both with every core kept busy. A sender keeps what got no
//! `202` and sends it again (same `eventId`s) once tocsin is back, as a
//! webhook sender or an SDK does; the alerts must then come out exactly
//! as if nothing had stopped: every event that got a `202` counted, none
//! twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use tocsin_tests::load::CpuHog;
use tocsin_tests::peers::WebhookReceiver;
use tocsin_tests::{record_figure, wait_for, wait_progressing, Progress, Setup, Tocsin};

const WAIT: Duration = Duration::from_secs(60);
const CODE: &str = "DURABLE_TEST";
/// Events per request.
const BATCH: usize = 10;
/// The sending rate before the stop.
const EVENTS_PER_S: usize = 10_000;
/// Requests in flight at once (open loop: each waits for its slot).
const SENDERS: usize = 32;

/// The rule: an alert for every 10 events of a service, on `channel`.
fn rule(channel: &str) -> String {
    format!(
        "[match]\ncodes = [\"{CODE}\"]\n[aggregate]\nplugin = \"threshold\"\n\
         config = {{ threshold = 10, window = \"1h\", samples = 1 }}\n{channel}"
    )
}

/// `n` events over `services` services, in requests of [`BATCH`], each
/// event with its own id.
fn batches(n: usize, services: usize) -> Vec<Value> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|chunk| {
            Value::Array(
                chunk
                    .iter()
                    .map(|i| {
                        json!({
                            "errorCode": CODE, "severity": "high",
                            "serviceName": format!("svc-{}", i % services),
                            "message": format!("event {i}"), "eventId": format!("durable-{i}"),
                        })
                    })
                    .collect(),
            )
        })
        .collect()
}

/// What became of each request: not sent yet, answered `202`, or not.
#[derive(Clone, Copy, PartialEq)]
enum Sent {
    No,
    Accepted,
    Refused,
}

/// Posts `batches` open-loop at [`EVENTS_PER_S`] from [`SENDERS`] tasks
/// until all are sent or `stop` is set; what each request got.
struct Sender {
    outcome: Arc<Mutex<Vec<Sent>>>,
    stop: Arc<AtomicBool>,
    refused_503: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Sender {
    fn start(url: String, batches: Arc<Vec<Value>>) -> Self {
        let outcome = Arc::new(Mutex::new(vec![Sent::No; batches.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let refused_503 = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let per_request = Duration::from_secs_f64(BATCH as f64 / EVENTS_PER_S as f64);
        let http = reqwest::Client::new();
        let tasks = (0..SENDERS)
            .map(|_| {
                let (url, batches, http) = (url.clone(), batches.clone(), http.clone());
                let (outcome, stop, next) = (outcome.clone(), stop.clone(), next.clone());
                let refused_503 = refused_503.clone();
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= batches.len() || stop.load(Ordering::Relaxed) {
                            return;
                        }
                        tokio::time::sleep_until((started + per_request * i as u32).into()).await;
                        let r = http.post(&url).json(&batches[i]).send().await;
                        let got = match r {
                            Ok(r) if r.status() == 202 => Sent::Accepted,
                            Ok(r) => {
                                if r.status() == 503 {
                                    refused_503.fetch_add(1, Ordering::Relaxed);
                                }
                                Sent::Refused
                            }
                            Err(_) => Sent::Refused,
                        };
                        if let Ok(mut o) = outcome.lock() {
                            o[i] = got;
                        }
                    }
                })
            })
            .collect();
        Self {
            outcome,
            stop,
            refused_503,
            tasks,
            started,
        }
    }

    fn accepted(&self) -> usize {
        self.outcome
            .lock()
            .map_or(0, |o| o.iter().filter(|s| **s == Sent::Accepted).count())
    }

    /// Stops sending and waits for the requests in flight; what each got.
    async fn finish(self) -> Result<(Vec<Sent>, Duration, usize)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await?;
        }
        let outcome = self.outcome.lock().map(|o| o.clone()).unwrap_or_default();
        Ok((
            outcome,
            self.started.elapsed(),
            self.refused_503.load(Ordering::Relaxed),
        ))
    }
}

/// Sends again every batch that got no `202`, until each does.
async fn resend(t: &Tocsin, batches: &[Value], outcome: &[Sent]) -> Result<usize> {
    let mut again = 0;
    for (batch, sent) in batches.iter().zip(outcome) {
        if *sent == Sent::Accepted {
            continue;
        }
        again += 1;
        wait_for("a re-sent batch accepted", WAIT, || async {
            Ok(t.post_events(batch).await?.0 == 202)
        })
        .await?;
    }
    Ok(again)
}

/// Waits until `count()` alerts exist, then checks they are exactly what
/// `n` events over `services` services make with threshold 10.
async fn exactly_once<F, Fut>(n: usize, services: usize, mut keys: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>>>,
{
    wait_progressing("every alert", WAIT, || {
        let got = keys();
        async move {
            let got = got.await?.len();
            Ok(Progress {
                done: got >= n / 10,
                figure: got as f64,
                state: format!("{got} of {} alerts", n / 10),
            })
        }
    })
    .await?;
    let keys = keys().await?;
    ensure!(
        keys.len() == n / 10,
        "{} alerts, not {}",
        keys.len(),
        n / 10
    );
    let mut per_service = BTreeMap::new();
    for k in keys {
        *per_service.entry(k).or_insert(0usize) += 1;
    }
    ensure!(per_service.len() == services, "{per_service:?}");
    ensure!(
        per_service.values().all(|&c| c == n / services / 10),
        "an alert for every 10 events of each service, none twice: {per_service:?}"
    );
    Ok(())
}

/// An engine with the rule on `channel` (of plugin `plugin`), and `n`
/// events over `services` services being sent to it, once `1/part` of
/// them got a `202`.
async fn under_load(
    plugin: &'static str,
    channel: &str,
    n: usize,
    services: usize,
    part: usize,
) -> Result<(Tocsin, Arc<Vec<Value>>, Sender)> {
    let t = Tocsin::start(Setup {
        plugins: vec!["threshold", plugin],
        default_rules: false,
        rules: vec![("durable.toml".into(), rule(channel))],
        ..Setup::default()
    })
    .await?;
    let batches = Arc::new(batches(n, services));
    let sender = Sender::start(t.url("/v1/events"), batches.clone());
    wait_for("a share of the events accepted", WAIT, || async {
        Ok(sender.accepted() * BATCH >= n / part)
    })
    .await?;
    Ok((t, batches, sender))
}

/// The key of every notification of the rule `durable` (the service).
async fn notified(t: &Tocsin) -> Result<Vec<String>> {
    let n = t
        .get_json("/v1/notifications?rule=durable&limit=100000")
        .await?;
    let all = n["notifications"].as_array().cloned().unwrap_or_default();
    for x in &all {
        ensure!(x["count"] == 10, "an alert of other than 10 events: {x}");
    }
    Ok(all
        .iter()
        .map(|x| x["key"].as_str().unwrap_or("").to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_202_survives_sigkill_under_10k_events_per_second() -> Result<()> {
    const N: usize = 40_000;
    const SERVICES: usize = 40;
    let mut hog = CpuHog::start()?;
    let (mut t, batches, sender) =
        under_load("log", "[[channels]]\nplugin = \"log\"\n", N, SERVICES, 4).await?;
    t.kill()?;
    let accepted_at_kill = sender.accepted() * BATCH;
    let took = sender.started.elapsed();
    let (outcome, _, _) = sender.finish().await?;
    let accepted = outcome.iter().filter(|s| **s == Sent::Accepted).count() * BATCH;
    ensure!(hog.running(), "the CPU hogs stopped");
    t.spawn().await?;
    let again = resend(&t, &batches, &outcome).await?;
    exactly_once(N, SERVICES, || notified(&t)).await?;
    ensure!(hog.running(), "the CPU hogs stopped");
    record_figure(&format!(
        "durable 202 under SIGKILL: {accepted} events accepted before the kill \
         ({accepted_at_kill} when it came) at {:.0} events/s accepted with CPU hogs, \
         {again} requests without a 202 sent again: {} alerts, exact",
        accepted_at_kill as f64 / took.as_secs_f64(),
        N / 10
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_no_event_and_no_delivery() -> Result<()> {
    const N: usize = 20_000;
    const SERVICES: usize = 20;
    let mut hog = CpuHog::start()?;
    let hook = WebhookReceiver::start(&[], 200).await?;
    let channel = format!(
        "[[channels]]\nplugin = \"webhook\"\nconfig = {{ url = \"{}\" }}\n\
         grants = {{ http = [\"127.0.0.1\"] }}\n",
        hook.url()
    );
    let (mut t, batches, sender) = under_load("webhook", &channel, N, SERVICES, 3).await?;
    let stopping = Instant::now();
    t.stop()?;
    let stop_took = stopping.elapsed();
    let (outcome, _, refused_503) = sender.finish().await?;
    t.spawn().await?;
    let again = resend(&t, &batches, &outcome).await?;
    exactly_once(N, SERVICES, || notified(&t)).await?;
    // Every notification delivered to the webhook (a delivery in flight
    // at the stop may be sent twice, under one idempotency key).
    wait_for("every notification at the webhook", WAIT, || async {
        let keys: std::collections::HashSet<String> = hook
            .received()
            .into_iter()
            .map(|r| r.idempotency_key)
            .collect();
        Ok(keys.len() >= N / 10)
    })
    .await?;
    let received = hook.received();
    let distinct: std::collections::HashSet<&str> = received
        .iter()
        .map(|r| r.idempotency_key.as_str())
        .collect();
    ensure!(
        distinct.len() == N / 10,
        "{} distinct deliveries",
        distinct.len()
    );
    ensure!(hog.running(), "the CPU hogs stopped");
    record_figure(&format!(
        "SIGTERM under load with CPU hogs: stopped in {} ms, {refused_503} requests \
         answered 503 while draining, {again} requests without a 202 sent again; \
         {} alerts and {} webhook deliveries, exact",
        stop_took.as_millis(),
        N / 10,
        distinct.len()
    ));
    Ok(())
}
