//! `tocsin-loadgen`: the benchmark suite's load generator and webhook
//! receiver, a process of its own so its CPU is never mistaken for the
//! server's.
//!
//! Each mode prints one JSON object on stdout (its result, including the
//! CPU it and the `--cpu` groups used while measuring) and progress on
//! stderr. `tocsin-bench` runs it; it can also be run by hand against any
//! tocsin or Alertmanager, e.g.
//! `tocsin-loadgen post --addr 127.0.0.1:8080 --batch 10 --duration 5`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use benchkit::clock::mono_ns;
use benchkit::cpu::{self, Groups};
use benchkit::http::Conn;
use benchkit::load::{self, latency_from, Spec, Stop, WsCollector};
use benchkit::payload::{Alerts, Events, Kind};
use benchkit::stats::Latency;

/// Load generator and webhook receiver of the tocsin benchmark suite.
#[derive(Parser, Debug)]
#[command(name = "tocsin-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    /// Seed-format events to `POST /v1/events`.
    Events,
    /// Alertmanager v2 alerts to `POST /api/v2/alerts`.
    Alerts,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum CountBy {
    /// Distinct `Idempotency-Key` headers (tocsin deliveries).
    Keys,
    /// Distinct payload sequence numbers (any sender).
    Seqs,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Post events or alerts, closed-loop or at a fixed rate, then
    /// optionally wait for them to be processed or delivered.
    Post(PostArgs),
    /// One event at a time: send, wait for its WebSocket frame, pause.
    Idle(IdleArgs),
    /// Serve the webhook receiver; prints its address, exits when stdin closes.
    Receive {
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// The no-op AMQP consumer: drain `count` messages, ack each.
    AmqpNoop(AmqpArgs),
    /// Time a tocsin started after this: from its first consumed message
    /// until `tocsin_events_processed_total` reaches `count` and the
    /// queue is empty.
    AmqpWatch(WatchArgs),
}

#[derive(clap::Args, Debug)]
struct PostArgs {
    /// Server `host:port`.
    #[arg(long)]
    addr: String,
    #[arg(long, value_enum, default_value = "events")]
    kind: KindArg,
    /// Events (alerts) per request.
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Stop after this many events.
    #[arg(long, conflicts_with_all = ["duration", "until_eof"])]
    total: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, conflicts_with = "until_eof")]
    duration: Option<f64>,
    /// Stop when stdin closes.
    #[arg(long)]
    until_eof: bool,
    /// Events per second, open-loop; without it, closed-loop.
    #[arg(long)]
    rate: Option<f64>,
    /// errorCode of the events.
    #[arg(long, default_value = "BENCH_INGEST")]
    code: String,
    /// Distinct serviceNames (events) cycled through.
    #[arg(long, default_value_t = 100)]
    services: u64,
    /// Distinct alertnames (alerts) cycled through; 0: every alert distinct.
    #[arg(long, default_value_t = 0)]
    distinct: u64,
    /// Collect WebSocket frames of this rule and report their latency.
    #[arg(long)]
    ws_rule: Option<String>,
    /// Wait until `tocsin_events_processed_total` grew by what was sent.
    #[arg(long)]
    wait_processed: bool,
    /// Webhook receiver `host:port` to wait for and read latencies from.
    #[arg(long)]
    receiver: Option<String>,
    /// What the receiver counts to decide everything arrived.
    #[arg(long, value_enum, default_value = "seqs")]
    count_by: CountBy,
    /// How many must arrive (default: everything sent).
    #[arg(long)]
    expect: Option<u64>,
    /// Longest wait for processing or delivery after sending, seconds.
    #[arg(long, default_value_t = 60.0)]
    wait_secs: f64,
    /// Fraction of the first sequence numbers left out of latencies.
    #[arg(long, default_value_t = 0.1)]
    warmup: f64,
    /// CPU groups to account: `name=pid[,pid]`.
    #[arg(long)]
    cpu: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct IdleArgs {
    #[arg(long)]
    addr: String,
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Pause between events, milliseconds.
    #[arg(long, default_value_t = 2)]
    gap_ms: u64,
    #[arg(long, default_value = "BENCH_LATENCY")]
    code: String,
    #[arg(long, default_value = "bench-latency")]
    ws_rule: String,
    /// A webhook receiver to post the same events to first, one at a
    /// time: the round trip of a no-op HTTP server on this machine, the
    /// floor under tocsin's figures.
    #[arg(long)]
    baseline: Option<String>,
    #[arg(long)]
    cpu: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct AmqpArgs {
    #[arg(long, default_value = benchkit::amqp::DEFAULT_URL)]
    url: String,
    #[arg(long)]
    queue: String,
    #[arg(long)]
    count: u64,
    /// Ack from a separate task, awaiting each ack before the next (how
    /// tocsin's source settles), instead of concurrently.
    #[arg(long)]
    sequential_acks: bool,
    #[arg(long)]
    cpu: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct WatchArgs {
    #[arg(long, default_value = benchkit::amqp::DEFAULT_URL)]
    url: String,
    #[arg(long)]
    queue: String,
    #[arg(long)]
    count: u64,
    /// tocsin's `host:port`, for `/metrics`.
    #[arg(long)]
    metrics: String,
    /// File the runner writes tocsin's pid to once it started it.
    #[arg(long)]
    pid_file: PathBuf,
    #[arg(long)]
    cpu: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tocsin-loadgen: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(v) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
        }
        Err(e) => {
            eprintln!("tocsin-loadgen: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(cli: Cli) -> Result<Value> {
    match cli.mode {
        Mode::Post(a) => post(a).await,
        Mode::Idle(a) => idle(a).await,
        Mode::Receive { port } => receive(port).await,
        Mode::AmqpNoop(a) => amqp_noop(a).await,
        Mode::AmqpWatch(a) => amqp_watch(a).await,
    }
}

/// Sets the returned flag when stdin reaches end of file (the runner
/// closed it, or died).
fn stdin_closed_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        while matches!(lock.read_line(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
        f.store(true, Ordering::Relaxed);
    });
    flag
}

async fn post(a: PostArgs) -> Result<Value> {
    let groups = Groups::parse(&a.cpu)?;
    let kind = match a.kind {
        KindArg::Events => Kind::Events(Events {
            code: a.code.clone(),
            services: a.services,
        }),
        KindArg::Alerts => Kind::Alerts(Alerts {
            distinct: if a.distinct == 0 {
                u64::MAX
            } else {
                a.distinct
            },
        }),
    };
    let stop = match (a.total, a.duration, a.until_eof) {
        (Some(n), _, _) => Stop::Total(n),
        (_, Some(d), _) => Stop::Duration(Duration::from_secs_f64(d)),
        (_, _, true) => Stop::Flag,
        _ => bail!("say when to stop: --total, --duration or --until-eof"),
    };
    let flag = if a.until_eof {
        stdin_closed_flag()
    } else {
        Arc::new(AtomicBool::new(false))
    };
    let spec = Spec {
        addr: a.addr.clone(),
        kind,
        batch: a.batch,
        conns: a.conns,
        stop,
        rate: a.rate,
    };
    let ws = match &a.ws_rule {
        Some(rule) => Some(WsCollector::connect(&a.addr, &format!("?rule={rule}")).await?),
        None => None,
    };
    let mut metrics = Conn::connect(&a.addr).await?;
    let baseline = if a.wait_processed {
        metrics.metric("tocsin_events_processed_total", &[]).await?
    } else {
        0.0
    };
    let mut receiver = match &a.receiver {
        Some(r) => Some(benchkit::receiver::Client::connect(r).await?),
        None => None,
    };

    let before = cpu::snapshot(&groups);
    let started = Instant::now();
    let sent = load::drive(&spec, flag).await?;
    let send_end_ns = mono_ns();
    let after_send = cpu::snapshot(&groups);
    eprintln!(
        "  sent {} in {:.2} s ({} requests, {} errors)",
        sent.events, sent.elapsed_s, sent.requests, sent.errors
    );
    if sent.events == 0 {
        bail!(
            "nothing was accepted; first error: {}",
            sent.first_error.as_deref().unwrap_or("none")
        );
    }
    let wait = Duration::from_secs_f64(a.wait_secs);
    let warmup_seq = (sent.events as f64 * a.warmup) as u64;

    let mut processed = Value::Null;
    if a.wait_processed {
        let target = baseline + sent.events as f64;
        let deadline = Instant::now() + wait;
        let mut seen = 0.0;
        loop {
            seen = metrics
                .metric("tocsin_events_processed_total", &[])
                .await
                .unwrap_or(seen);
            if seen >= target || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        processed = json!({
            "count": seen - baseline,
            "complete": seen >= target,
            "at_s": started.elapsed().as_secs_f64(),
        });
    }

    let mut ws_result = Value::Null;
    if let Some(ws) = &ws {
        ws.wait_for(sent.events, wait.min(Duration::from_secs(10)))
            .await;
        let samples = ws.samples();
        ws_result = json!({
            "received": samples.len(),
            "missing": sent.events.saturating_sub(samples.len() as u64),
            "latency": latency_from(&samples, warmup_seq),
        });
    }

    let mut receiver_result = Value::Null;
    if let Some(rc) = receiver.as_mut() {
        let expect = a.expect.unwrap_or(sent.events);
        let deadline = Instant::now() + wait;
        let mut stats = rc.stats(false).await?;
        loop {
            let have = match a.count_by {
                CountBy::Keys => stats.distinct_keys,
                CountBy::Seqs => stats.distinct_seqs,
            };
            if have >= expect || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            stats = rc.stats(false).await?;
        }
        let raw = rc.stats(true).await?;
        let (count, last) = match a.count_by {
            CountBy::Keys => (raw.distinct_keys, raw.last_new_key_ns),
            CountBy::Seqs => (raw.distinct_seqs, raw.last_new_seq_ns),
        };
        let span_s = last.saturating_sub(raw.first_post_ns) as f64 / 1e9;
        receiver_result = json!({
            "count": count,
            "expected": expect,
            "complete": count >= expect,
            "posts": raw.posts,
            "span_s": span_s,
            "rate": if span_s > 0.0 { count as f64 / span_s } else { 0.0 },
            // How long after the generator's last send the last one arrived.
            "tail_s": last.saturating_sub(send_end_ns) as f64 / 1e9,
            "latency": latency_from(&raw.samples, warmup_seq),
        });
    }
    let end = cpu::snapshot(&groups);
    Ok(json!({
        "sent": sent,
        "cpu_send": cpu::usage(&before, &after_send),
        "cpu": cpu::usage(&before, &end),
        "processed": processed,
        "ws": ws_result,
        "receiver": receiver_result,
    }))
}

async fn idle(a: IdleArgs) -> Result<Value> {
    let groups = Groups::parse(&a.cpu)?;
    let events = Events {
        code: a.code.clone(),
        services: 1,
    };
    let mut baseline = Value::Null;
    if let Some(addr) = &a.baseline {
        let mut conn = Conn::connect(addr).await?;
        let mut rtts = Vec::with_capacity(a.count as usize);
        for seq in 0..a.count {
            let sent = mono_ns();
            let (status, _) = conn.post_json("/hook", events.event(seq, sent)).await?;
            if status != 200 {
                bail!("the baseline receiver answered {status}");
            }
            rtts.push(mono_ns().saturating_sub(sent));
            tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
        }
        baseline = json!(Latency::from_ns(rtts));
    }
    let mut ws = WsCollector::connect(&a.addr, &format!("?rule={}", a.ws_rule)).await?;
    let mut conn = Conn::connect(&a.addr).await?;
    let mut rtts = Vec::with_capacity(a.count as usize);
    let mut missing = 0u64;
    let before = cpu::snapshot(&groups);
    for seq in 0..a.count {
        let sent = mono_ns();
        let (status, body) = conn
            .post_json("/v1/events", events.event(seq, sent))
            .await?;
        if status != 202 {
            bail!(
                "POST /v1/events answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        rtts.push(mono_ns().saturating_sub(sent));
        // Wait for this event's frame (earlier stragglers are skipped).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            match tokio::time::timeout_at(deadline, ws.arrivals.recv()).await {
                Ok(Some(s)) if s == seq => break,
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the WebSocket closed"),
                Err(_) => {
                    missing += 1;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
    }
    let end = cpu::snapshot(&groups);
    let samples = ws.samples();
    Ok(json!({
        "sent": a.count,
        "missing": missing,
        "latency": latency_from(&samples, 0),
        "accept": Latency::from_ns(rtts),
        "baseline": baseline,
        "cpu": cpu::usage(&before, &end),
    }))
}

async fn receive(port: u16) -> Result<Value> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}",
            json!({ "addr": addr.to_string(), "pid": std::process::id() })
        )?;
        out.flush()?;
    }
    let closed = stdin_closed_flag();
    tokio::select! {
        r = benchkit::receiver::serve(listener) => r?,
        _ = async {
            while !closed.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } => {}
    }
    // The address line was the output; exit without a second one.
    std::process::exit(0);
}

async fn amqp_noop(a: AmqpArgs) -> Result<Value> {
    let groups = Groups::parse(&a.cpu)?;
    let conn = benchkit::amqp::connect(&a.url).await?;
    let before = cpu::snapshot(&groups);
    let mode = if a.sequential_acks {
        benchkit::amqp::Acks::Sequential
    } else {
        benchkit::amqp::Acks::Concurrent
    };
    let elapsed = benchkit::amqp::noop_consume(&conn, &a.queue, a.count, mode).await?;
    let end = cpu::snapshot(&groups);
    let _ = conn.close(200, "done".into()).await;
    Ok(json!({
        "count": a.count,
        "elapsed_s": elapsed.as_secs_f64(),
        "rate": a.count as f64 / elapsed.as_secs_f64().max(1e-9),
        "cpu": cpu::usage(&before, &end),
    }))
}

async fn amqp_watch(a: WatchArgs) -> Result<Value> {
    let conn = benchkit::amqp::connect(&a.url).await?;
    let ch = conn.create_channel().await?;
    // 1. The consumer's start: the queue's ready count drops below `count`.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = u64::from(benchkit::amqp::ready(&ch, &a.queue).await?);
        if ready < a.count {
            break;
        }
        if Instant::now() > deadline {
            bail!("tocsin did not start consuming {} within 60 s", a.queue);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let started = Instant::now();
    let pid = read_pid(&a.pid_file).await?;
    let groups = Groups::parse(&a.cpu)?.with("server", vec![pid]);
    let before = cpu::snapshot(&groups);
    // 2. The end: everything processed and nothing left in the queue.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut metrics: Option<Conn> = None;
    let mut processed = 0.0;
    loop {
        if metrics.is_none() {
            metrics = Conn::connect(&a.metrics).await.ok();
        }
        if let Some(m) = metrics.as_mut() {
            match m.metric("tocsin_events_processed_total", &[]).await {
                Ok(v) => processed = v,
                Err(_) => metrics = None,
            }
        }
        if processed >= a.count as f64 && benchkit::amqp::ready(&ch, &a.queue).await? == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "tocsin processed {processed} of {} messages within 300 s",
                a.count
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let end = cpu::snapshot(&groups);
    let _ = conn.close(200, "done".into()).await;
    Ok(json!({
        "count": a.count,
        "elapsed_s": elapsed.as_secs_f64(),
        "rate": a.count as f64 / elapsed.as_secs_f64().max(1e-9),
        "cpu": cpu::usage(&before, &end),
    }))
}

/// The pid the runner wrote (it starts tocsin right after this watcher).
async fn read_pid(path: &std::path::Path) -> Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return Ok(pid);
            }
        }
        if Instant::now() > deadline {
            bail!("no pid in {} within 10 s", path.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
