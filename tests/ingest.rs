//! Ingestion from other tools, driven by the real clients: the Python
//! Sentry SDK, `amtool`, a real Alertmanager delivering to tocsin's webhook
//! receiver, and raw protocol edge cases over HTTP. The clients are
//! installed by `cargo xtask test` (xtask/src/clients.rs).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tocsin_tests::{metric_value, root, wait_for, Setup, TempDir, Tocsin, Ws};

const WAIT: Duration = Duration::from_secs(15);

/// A rule alerting on every matching event (threshold 1) on the live
/// stream. `matcher` is the body of `[match]`; `key` the threshold key.
fn rule(matcher: &str, key: &str) -> String {
    format!(
        "[match]\n{matcher}\n\n[aggregate]\nplugin = \"threshold\"\n\
         config = {{ threshold = 1, window = \"1h\", key = {key}, clock = \"event\" }}\n\n\
         [[channels]]\nplugin = \"websocket\"\ngrants = {{ websocket = true }}\n"
    )
}

/// An engine with only `rules` and extra environment.
async fn engine(rules: Vec<(&str, String)>, env: &[(&str, &str)]) -> Result<Tocsin> {
    let mut setup = Setup {
        plugins: vec!["threshold", "websocket"],
        default_rules: false,
        rules: rules.into_iter().map(|(f, t)| (f.to_string(), t)).collect(),
        ..Setup::default()
    };
    for (k, v) in env {
        setup.env.push((k.to_string(), v.to_string()));
    }
    Tocsin::start(setup).await
}

/// `host:port` of the engine.
fn authority(t: &Tocsin) -> &str {
    t.base.trim_start_matches("http://")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The live stream, keeping messages read but not yet asked for, so
/// waits do not depend on the order in which notifications arrive.
struct Stream {
    ws: Ws,
    kept: Vec<Value>,
}

impl Stream {
    async fn open(t: &Tocsin) -> Result<Self> {
        Ok(Self {
            ws: t.ws("").await?,
            kept: Vec::new(),
        })
    }

    /// The first message satisfying `pred`, waiting up to [`WAIT`].
    async fn take(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        if let Some(i) = self.kept.iter().position(&pred) {
            return Ok(self.kept.remove(i));
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let n = self.ws.next(left).await.with_context(|| {
                format!("waiting for {what}; received meanwhile: {:?}", self.kept)
            })?;
            if pred(&n) {
                return Ok(n);
            }
            self.kept.push(n);
        }
    }
}

/// Runs a command to completion within `within`; returns (success, stdout,
/// stderr).
async fn run(
    cmd: &mut tokio::process::Command,
    within: Duration,
) -> Result<(bool, String, String)> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(within, cmd.output())
        .await
        .map_err(|_| anyhow!("{cmd:?} did not finish within {within:?}"))?
        .with_context(|| format!("starting {cmd:?}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn metric(t: &Tocsin, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    t.metric(name, labels).await
}

// ---------------------------------------------------------------- Sentry

/// The venv python with sentry-sdk, installed by `cargo xtask test` (or
/// `cargo xtask clients`) at `<target>/pyenv`.
fn python() -> Result<PathBuf> {
    let p = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("pyenv/bin/python");
    if !p.is_file() {
        bail!(
            "{} not found: run the tests with `cargo xtask test` (it installs sentry-sdk in target/pyenv)",
            p.display()
        );
    }
    Ok(p)
}

/// The engine's ingest counters and the SDK's output, for a failure message.
async fn diagnostics(t: &Tocsin, stdout: &str, stderr: &str) -> String {
    let metrics = match t.http.get(t.url("/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => e.to_string(),
    };
    let metrics: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tocsin_events") || l.starts_with("tocsin_ingest"))
        .collect();
    format!(
        "metrics:\n{}\nSDK stdout:\n{stdout}\nSDK stderr:\n{stderr}",
        metrics.join("\n")
    )
}

const SENTRY_SCRIPT: &str = r#"
import sys
import sentry_sdk

sentry_sdk.init(
    dsn=sys.argv[1],
    server_name="checkout",
    release="shop@1.2.3",
    environment="test",
    debug=True,
    # gzip is the default without the brotli module; say so explicitly so
    # the test does not depend on what else is installed.
    _experiments={"transport_compression_algo": "gzip"},
)
sentry_sdk.set_tag("region", "eu-west")
sentry_sdk.set_user({"id": "u-7"})


def divide(a, b):
    return a / b


try:
    divide(1, 0)
except ZeroDivisionError:
    print("exception", sentry_sdk.capture_exception())
print("message", sentry_sdk.capture_message("cache warmed slowly", level="warning"))
sentry_sdk.flush(timeout=10)
"#;

#[tokio::test]
async fn python_sentry_sdk_exceptions_and_messages_become_events() -> Result<()> {
    let rules = vec![
        (
            "sentry-zero-division.toml",
            rule(
                "codes = [\"ZERO_DIVISION_ERROR\"]\nsources = [\"sentry\"]\nmetadata = { release = \"shop@*\" }",
                "[\"error-code\", \"service-name\", \"metadata.environment\", \"metadata.region\", \"user-id\"]",
            ),
        ),
        (
            "sentry-message.toml",
            rule("codes = [\"MESSAGE\"]\nsources = [\"sentry\"]", "[\"error-code\", \"service-name\"]"),
        ),
    ];
    let t = engine(rules, &[("TOCSIN_INGEST_SENTRY_KEYS", "pubkey1,pubkey2")]).await?;
    let mut ws = Stream::open(&t).await?;
    let dir = TempDir::new("sentry-py")?;
    let script = dir.path().join("report.py");
    std::fs::write(&script, SENTRY_SCRIPT)?;
    let dsn = format!("http://pubkey2@{}/42", authority(&t));
    let (ok, stdout, stderr) = run(
        tokio::process::Command::new(python()?)
            .arg(&script)
            .arg(&dsn),
        Duration::from_secs(60),
    )
    .await?;
    assert!(ok, "python failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("exception ") && stdout.contains("message "),
        "{stdout}"
    );

    let n = match ws
        .take("the ZeroDivisionError alert", |n| {
            n["rule"] == "sentry-zero-division"
        })
        .await
    {
        Ok(n) => n,
        Err(e) => return Err(e.context(diagnostics(&t, &stdout, &stderr).await)),
    };
    assert_eq!(n["severity"], "high", "{n}");
    assert_eq!(n["labels"]["error-code"], "ZERO_DIVISION_ERROR", "{n}");
    assert_eq!(n["labels"]["service"], "checkout", "{n}");
    assert_eq!(n["labels"]["user-id"], "u-7", "{n}");
    assert_eq!(n["samples"], json!(["division by zero"]), "{n}");
    assert_eq!(
        n["key"], "ZERO_DIVISION_ERROR|checkout|test|eu-west|u-7",
        "tags and environment reach metadata: {n}"
    );

    let n = match ws
        .take("the capture_message alert", |n| {
            n["rule"] == "sentry-message"
        })
        .await
    {
        Ok(n) => n,
        Err(e) => return Err(e.context(diagnostics(&t, &stdout, &stderr).await)),
    };
    assert_eq!(n["severity"], "medium", "{n}");
    assert_eq!(n["samples"], json!(["cache warmed slowly"]), "{n}");

    assert_eq!(
        metric(&t, "tocsin_events_received_total", &[("source", "sentry")]).await?,
        2.0
    );
    assert!(
        metric(
            &t,
            "tocsin_ingest_bodies_total",
            &[("source", "sentry"), ("encoding", "gzip")]
        )
        .await?
            >= 2.0,
        "the SDK's gzip bodies were decoded"
    );
    assert_eq!(
        metric(
            &t,
            "tocsin_ingest_unauthorized_total",
            &[("source", "sentry")]
        )
        .await?,
        0.0
    );

    // The same SDK with a key tocsin does not know is refused.
    let dsn = format!("http://intruder@{}/42", authority(&t));
    let (ok, stdout, stderr) = run(
        tokio::process::Command::new(python()?)
            .arg(&script)
            .arg(&dsn),
        Duration::from_secs(60),
    )
    .await?;
    assert!(ok, "python failed:\n{stdout}\n{stderr}");
    wait_for("two refused envelopes", WAIT, || async {
        Ok(metric(
            &t,
            "tocsin_ingest_unauthorized_total",
            &[("source", "sentry")],
        )
        .await?
            >= 2.0)
    })
    .await?;
    assert_eq!(
        metric(&t, "tocsin_events_received_total", &[("source", "sentry")]).await?,
        2.0
    );
    Ok(())
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)?;
    Ok(e.finish()?)
}

fn zlib(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)?;
    Ok(e.finish()?)
}

fn br(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data)?;
    }
    Ok(out)
}

/// A Sentry exception event payload.
fn sentry_event(event_id: &str, ty: &str, value: &str, extra: Value) -> Value {
    let mut v = json!({
        "event_id": event_id,
        "level": "error",
        "platform": "node",
        "server_name": "edge",
        "exception": {"values": [{"type": ty, "value": value, "stacktrace": {"frames": [
            {"filename": "app.js", "function": "main", "lineno": 3},
            {"filename": "lib.js", "function": "boom", "lineno": 9}
        ]}}]},
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

/// An envelope holding `event`, with `length` on the item header.
fn envelope_with_length(event: &Value) -> Vec<u8> {
    let payload = event.to_string();
    format!(
        "{{\"event_id\":\"{}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        event["event_id"].as_str().unwrap_or_default(),
        payload.len()
    )
    .into_bytes()
}

struct Sentry<'a> {
    t: &'a Tocsin,
    key: &'a str,
}

impl Sentry<'_> {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.t
            .http
            .post(self.t.url(path))
            .header("content-type", "application/x-sentry-envelope")
            .header(
                "x-sentry-auth",
                format!(
                    "Sentry sentry_key={}, sentry_version=7, sentry_client=tocsin-test/1",
                    self.key
                ),
            )
    }

    /// Posts an envelope; returns status and JSON answer.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let r = req.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

#[tokio::test]
async fn sentry_protocol_edge_cases() -> Result<()> {
    let t = engine(
        vec![(
            "sentry-all.toml",
            rule(
                "sources = [\"sentry\"]",
                "[\"error-code\", \"service-name\"]",
            ),
        )],
        &[
            ("TOCSIN_INGEST_SENTRY_KEYS", "k1,k2"),
            ("TOCSIN_HTTP_MAX_BODY_BYTES", "65536"),
        ],
    )
    .await?;
    let mut ws = t.ws("").await?;
    let s = Sentry { t: &t, key: "k1" };
    let id = |n: u32| format!("{n:032x}");
    let envelope_path = "/api/7/envelope/";
    let mut accepted = 0.0;

    // 1. deflate (zlib) body.
    let ev = sentry_event(&id(1), "DeflateCaseError", "deflated", json!({}));
    let (status, answer) = s
        .send(
            s.post(envelope_path)
                .header("content-encoding", "deflate")
                .body(zlib(&envelope_with_length(&ev))?),
        )
        .await?;
    assert_eq!((status, &answer), (200, &json!({"id": id(1)})));
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["error-code"], "DEFLATE_CASE_ERROR", "{n}");
    assert_eq!(n["samples"], json!(["deflated"]), "{n}");
    accepted += 1.0;

    // 2. br body.
    let ev = sentry_event(&id(2), "BrotliCaseError", "brotli", json!({}));
    let (status, _) = s
        .send(
            s.post(envelope_path)
                .header("content-encoding", "br")
                .body(br(&envelope_with_length(&ev))?),
        )
        .await?;
    assert_eq!(status, 200);
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["error-code"], "BROTLI_CASE_ERROR", "{n}");
    accepted += 1.0;

    // 3. Items without `length`; the last one without a trailing newline;
    //    ignored item types (with and without length) around the event.
    let ev = sentry_event(&id(3), "NoLengthError", "no length", json!({}));
    let body = format!(
        "{{}}\n{{\"type\":\"session\"}}\n{{\"sid\":\"x\",\"status\":\"ok\"}}\n\
         {{\"type\":\"attachment\",\"length\":11,\"filename\":\"a.txt\"}}\nline1\nline2\n\
         {{\"type\":\"client_report\"}}\n{{\"discarded_events\":[]}}\n\
         {{\"type\":\"something_new\"}}\n{{}}\n\
         {{\"type\":\"event\"}}\n{}",
        ev
    );
    let (status, answer) = s.send(s.post(envelope_path).body(body)).await?;
    assert_eq!((status, &answer), (200, &json!({"id": id(3)})), "{answer}");
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["error-code"], "NO_LENGTH_ERROR", "{n}");
    accepted += 1.0;
    for kind in ["session", "attachment", "client_report", "other"] {
        assert_eq!(
            metric(
                &t,
                "tocsin_ingest_ignored_total",
                &[("source", "sentry"), ("kind", kind)]
            )
            .await?,
            1.0,
            "{kind}"
        );
    }

    // 4. Chunked body without Content-Length, gzip, fed in small pieces.
    let ev = sentry_event(&id(4), "ChunkedError", "chunked", json!({}));
    let compressed = gzip(&envelope_with_length(&ev))?;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        compressed.chunks(7).map(|c| Ok(c.to_vec())).collect();
    let req = s
        .post(envelope_path)
        .header("content-encoding", "gzip")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
    let (status, _) = s.send(req).await?;
    assert_eq!(status, 200);
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["error-code"], "CHUNKED_ERROR", "{n}");
    accepted += 1.0;

    // 5. Node style: float epoch-seconds timestamp, auth by ?sentry_key=.
    let ev = sentry_event(
        &id(5),
        "TypeError",
        "x is undefined",
        json!({"timestamp": 1_714_566_896.789_f64, "level": "fatal"}),
    );
    let r = t
        .http
        .post(t.url(&format!("{envelope_path}?sentry_key=k2&sentry_version=7")))
        .body(envelope_with_length(&ev))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await?);
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["error-code"], "TYPE_ERROR", "{n}");
    assert_eq!(n["severity"], "critical", "{n}");
    assert_eq!(
        n["firstSeen"], 1_714_566_896_789_i64,
        "event clock = the SDK's timestamp: {n}"
    );
    accepted += 1.0;

    // 6. The store endpoint (one JSON event), gzip; message event.
    let ev = json!({"event_id": id(6), "message": "stored message", "level": "info", "timestamp": "2027-01-15T08:00:00Z"});
    let (status, answer) = s
        .send(
            s.post("/api/7/store/")
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(gzip(ev.to_string().as_bytes())?),
        )
        .await?;
    assert_eq!((status, &answer), (200, &json!({"id": id(6)})));
    let n = ws.next(WAIT).await?;
    assert_eq!(
        (n["labels"]["error-code"].as_str(), n["severity"].as_str()),
        (Some("MESSAGE"), Some("low")),
        "{n}"
    );
    assert_eq!(n["labels"]["service"], "sentry-7", "{n}");
    assert_eq!(n["firstSeen"], 1_800_000_000_000_i64, "{n}");
    accepted += 1.0;

    // Refusals: none of these may produce an event.
    // 7. Bad JSON in item 1 → 400 naming item 1.
    let good = sentry_event(&id(7), "GoodError", "fine", json!({}));
    let body = format!(
        "{{}}\n{{\"type\":\"event\"}}\n{good}\n{{\"type\":\"event\"}}\n{{\"exception\": nope}}\n"
    );
    let (status, answer) = s.send(s.post(envelope_path).body(body)).await?;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errors"][0]["item"], 1, "{answer}");
    assert!(
        answer["errors"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not valid JSON"),
        "{answer}"
    );
    // An event with neither exception nor message names the field.
    let body = "{}\n{\"type\":\"event\"}\n{\"level\":\"error\"}";
    let (status, answer) = s.send(s.post(envelope_path).body(body)).await?;
    assert_eq!(
        (status, answer["errors"][0]["field"].as_str()),
        (400, Some("exception")),
        "{answer}"
    );

    // 8. Wrong key → 401 and counted; missing key → 401.
    let wrong = Sentry { t: &t, key: "k3" };
    let (status, answer) = wrong
        .send(wrong.post(envelope_path).body(envelope_with_length(&good)))
        .await?;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("sentry_key"),
        "{answer}"
    );
    let r = t
        .http
        .post(t.url(envelope_path))
        .body(envelope_with_length(&good))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        metric(
            &t,
            "tocsin_ingest_unauthorized_total",
            &[("source", "sentry")]
        )
        .await?,
        2.0
    );

    // 9. Too large: on the wire, and after decompression (a gzip bomb).
    let big = vec![b' '; 70_000];
    let (status, answer) = s.send(s.post(envelope_path).body(big)).await?;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("65536"),
        "{answer}"
    );
    let mut bomb = envelope_with_length(&good);
    bomb.extend(std::iter::repeat_n(b'\n', 8 << 20));
    let bomb = gzip(&bomb)?;
    assert!(bomb.len() < 65536, "the bomb itself fits: {}", bomb.len());
    let (status, answer) = s
        .send(
            s.post(envelope_path)
                .header("content-encoding", "gzip")
                .body(bomb),
        )
        .await?;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("after gzip decompression"),
        "{answer}"
    );

    // 10. Only ignored items: accepted, no event.
    let (status, _) = s
        .send(
            s.post(envelope_path)
                .body("{}\n{\"type\":\"sessions\"}\n{\"aggregates\":[]}\n"),
        )
        .await?;
    assert_eq!(status, 200);

    // Nothing from 7–10 arrived: a marker sent last is the next message.
    let marker = sentry_event(&id(11), "MarkerError", "marker", json!({}));
    let (status, _) = s
        .send(s.post(envelope_path).body(envelope_with_length(&marker)))
        .await?;
    assert_eq!(status, 200);
    let n = ws.next(WAIT).await?;
    assert_eq!(
        n["labels"]["error-code"], "MARKER_ERROR",
        "refused envelopes made no event: {n}"
    );
    accepted += 1.0;
    assert_eq!(
        metric(&t, "tocsin_events_received_total", &[("source", "sentry")]).await?,
        accepted
    );
    Ok(())
}

// ---------------------------------------------------------- Alertmanager

const AM_TOKEN: &str = "am-secret-token";

/// An amtool HTTP client config sending the bearer token.
fn amtool_http_config(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("amtool-http.yml");
    std::fs::write(
        &p,
        format!("authorization:\n  type: Bearer\n  credentials: {AM_TOKEN}\n"),
    )?;
    Ok(p)
}

/// tocsin with one rule taking Alertmanager alerts, grouped by `key_fields`
/// (a TOML array), and the Alertmanager receiver's token set.
async fn alertmanager_engine(key_fields: &str) -> Result<Tocsin> {
    engine(
        vec![("am.toml", rule("sources = [\"alertmanager\"]", key_fields))],
        &[("TOCSIN_INGEST_ALERTMANAGER_TOKEN", AM_TOKEN)],
    )
    .await
}

fn amtool(url: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("amtool");
    c.arg(format!("--alertmanager.url={url}"));
    // No ~/.config/prometheus/amtool.yml of the machine's user.
    c.env("HOME", std::env::temp_dir());
    c
}

#[tokio::test]
async fn amtool_alerts_arrive_as_events() -> Result<()> {
    let t = alertmanager_engine("[\"error-code\", \"service-name\", \"metadata.annotation.runbook\", \"metadata.generatorURL\"]").await?;
    let mut ws = t.ws("").await?;
    let dir = TempDir::new("amtool")?;
    let http_config = amtool_http_config(dir.path())?;

    // Without the token: refused (amtool's version check and the post).
    let (ok, stdout, stderr) = run(
        amtool(&t.base).args(["alert", "add", "alertname=DiskFull", "severity=critical"]),
        WAIT,
    )
    .await?;
    assert!(!ok, "amtool without a token must fail:\n{stdout}\n{stderr}");
    assert!(
        metric(
            &t,
            "tocsin_ingest_unauthorized_total",
            &[("source", "alertmanager")]
        )
        .await?
            >= 1.0
    );

    // Labels only, summary as a label (amtool's quick form).
    let (ok, stdout, stderr) = run(
        amtool(&t.base)
            .arg(format!("--http.config.file={}", http_config.display()))
            .args([
                "alert",
                "add",
                "alertname=DiskFull",
                "severity=critical",
                "service=db",
                "summary=disk / is 97% full",
            ]),
        WAIT,
    )
    .await?;
    assert!(ok, "amtool failed:\n{stdout}\n{stderr}");
    let n = ws.next(WAIT).await?;
    assert_eq!(n["rule"], "am", "{n}");
    assert_eq!(n["labels"]["error-code"], "DiskFull", "{n}");
    assert_eq!(n["labels"]["service"], "db", "{n}");
    assert_eq!(n["severity"], "critical", "{n}");
    assert_eq!(n["samples"], json!(["disk / is 97% full"]), "{n}");

    // Annotations, generator URL, `warning` severity, `job` as the service.
    let (ok, stdout, stderr) = run(
        amtool(&t.base)
            .arg(format!("--http.config.file={}", http_config.display()))
            .args([
                "alert",
                "add",
                "alertname=CertExpiring",
                "severity=warning",
                "job=ingress",
                "--annotation=summary=certificate expires in 3 days",
                "--annotation=runbook=http://runbooks/cert",
                "--generator-url=http://prometheus/graph",
            ]),
        WAIT,
    )
    .await?;
    assert!(ok, "amtool failed:\n{stdout}\n{stderr}");
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["error-code"], "CertExpiring", "{n}");
    assert_eq!(n["labels"]["service"], "ingress", "{n}");
    assert_eq!(n["severity"], "medium", "{n}");
    assert_eq!(
        n["samples"],
        json!(["certificate expires in 3 days"]),
        "{n}"
    );
    assert_eq!(
        n["key"], "CertExpiring|ingress|http://runbooks/cert|http://prometheus/graph",
        "annotations and generatorURL reach metadata: {n}"
    );
    assert_eq!(
        metric(
            &t,
            "tocsin_events_received_total",
            &[("source", "alertmanager")]
        )
        .await?,
        2.0
    );

    // The status endpoint amtool checks, as Alertmanager's v2 API.
    let status: Value = t
        .http
        .get(t.url("/api/v2/status"))
        .bearer_auth(AM_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(status["cluster"]["status"], "ready", "{status}");
    assert!(status["versionInfo"]["version"].is_string(), "{status}");
    assert_eq!(status["config"]["original"], "", "{status}");
    assert!(
        status["uptime"].as_str().is_some_and(|u| u.contains('T')),
        "{status}"
    );
    Ok(())
}

#[tokio::test]
async fn alertmanager_api_validates_dedupes_and_resolves() -> Result<()> {
    let t = alertmanager_engine("[\"error-code\", \"service-name\"]").await?;
    let mut ws = t.ws("").await?;
    let post = |body: Value| {
        t.http
            .post(t.url("/api/v2/alerts"))
            .bearer_auth(AM_TOKEN)
            .json(&body)
            .send()
    };

    // Item 1 lacks its alertname: 400 naming it; item 0 is kept (like
    // Alertmanager).
    let r = post(json!([
        {"labels": {"alertname": "QueueStuck", "service": "jobs", "severity": "error"}, "startsAt": "2020-01-15T08:00:00Z"},
        {"labels": {"severity": "high"}},
    ]))
    .await?;
    assert_eq!(r.status().as_u16(), 400);
    let answer: Value = r.json().await?;
    assert_eq!(answer["errors"][0]["item"], 1, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "labels.alertname", "{answer}");
    let n = ws.next(WAIT).await?;
    assert_eq!(n["labels"]["error-code"], "QueueStuck", "{n}");
    assert_eq!(n["severity"], "high", "{n}");

    // The same alert again (as Prometheus re-sends): 200, no new event.
    let r = post(json!([
        {"labels": {"severity": "error", "service": "jobs", "alertname": "QueueStuck"}, "startsAt": "2020-01-15T08:00:00.000Z",
         "endsAt": "2099-01-01T00:00:00Z"},
    ]))
    .await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await?, "", "Alertmanager answers an empty body");
    assert_eq!(
        metric(
            &t,
            "tocsin_ingest_duplicates_total",
            &[("source", "alertmanager")]
        )
        .await?,
        1.0
    );

    // Now resolved: a resolution, not a counted event, rendered by the
    // rule's channel.
    let r = post(json!([
        {"labels": {"alertname": "QueueStuck", "service": "jobs", "severity": "error"},
         "startsAt": "2020-01-15T08:00:00Z", "endsAt": "2020-01-15T09:00:00Z"},
    ]))
    .await?;
    assert_eq!(r.status().as_u16(), 200);
    let n = ws.next(WAIT).await?;
    assert_eq!(n["type"], "resolved", "{n}");
    assert_eq!(n["status"], "resolved", "{n}");
    assert_eq!(n["rule"], "am", "{n}");
    assert_eq!(n["key"], "QueueStuck|jobs", "{n}");
    assert_eq!(n["count"], 0, "{n}");
    assert_eq!(n["labels"]["source"], "alertmanager", "{n}");
    assert_eq!(n["labels"]["error-code"], "QueueStuck", "{n}");
    assert_eq!(n["labels"]["service"], "jobs", "{n}");
    assert_eq!(
        n["severity"], "high",
        "severity \"error\" maps to high: {n}"
    );
    assert_eq!(n["labels"]["endsAt"], "2020-01-15T09:00:00Z", "{n}");
    assert_eq!(
        metric(
            &t,
            "tocsin_resolutions_total",
            &[("source", "alertmanager")]
        )
        .await?,
        1.0
    );

    // Errors in shape, JSON and auth.
    let r = post(json!({"labels": {}})).await?;
    assert_eq!(r.status().as_u16(), 400);
    let r = t
        .http
        .post(t.url("/api/v2/alerts"))
        .bearer_auth(AM_TOKEN)
        .body("[{")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await?.contains("not valid JSON"));
    for token in [None, Some("wrong")] {
        let mut req = t.http.post(t.url("/api/v2/alerts")).json(&json!([]));
        if let Some(tok) = token {
            req = req.bearer_auth(tok);
        }
        let r = req.send().await?;
        assert_eq!(r.status().as_u16(), 401);
        let body: Value = r.json().await?;
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("bearer")),
            "{body}"
        );
    }
    assert_eq!(
        metric(
            &t,
            "tocsin_ingest_unauthorized_total",
            &[("source", "alertmanager")]
        )
        .await?,
        2.0
    );
    assert_eq!(
        metric(
            &t,
            "tocsin_events_received_total",
            &[("source", "alertmanager")]
        )
        .await?,
        1.0
    );
    Ok(())
}

/// A real Alertmanager process, killed on drop.
struct Alertmanager {
    child: std::process::Child,
    url: String,
    dir: TempDir,
}

impl Alertmanager {
    async fn start(webhook: &str) -> Result<Self> {
        let dir = TempDir::new("alertmanager")?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: tocsin\n  group_by: ['alertname']\n  group_wait: 0s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: tocsin\n    webhook_configs:\n      - url: '{webhook}'\n        \
                 send_resolved: true\n        http_config:\n          authorization:\n            \
                 credentials: '{AM_TOKEN}'\n"
            ),
        )?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))?;
        let child = std::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus-alertmanager (installed by `cargo xtask test`)")?;
        let mut am = Self {
            child,
            url: format!("http://{listen}"),
            dir,
        };
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", am.url);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = am.child.try_wait()? {
                bail!("prometheus-alertmanager exited: {status}\n{}", am.log());
            }
            if http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "Alertmanager not ready on {ready} within 30 s\n{}",
                    am.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(am)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rfc3339(offset_secs: i64) -> Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let t = now.as_secs() as i64 + offset_secs;
    // Civil from days (Howard Hinnant's algorithm), UTC.
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

#[tokio::test]
async fn real_alertmanager_webhook_delivers_firing_then_resolved() -> Result<()> {
    let t = alertmanager_engine(
        "[\"error-code\", \"service-name\", \"metadata.alertmanager.receiver\"]",
    )
    .await?;
    let mut ws = Stream::open(&t).await?;
    let am = Alertmanager::start(&t.url("/v1/ingest/alertmanager")).await?;
    // An explicit start an hour ago, so the resolution's end (a second ago)
    // falls inside the alert and Alertmanager merges the two.
    let start = rfc3339(-3600)?;
    let labels = ["alertname=ReplicaLag", "severity=high", "service=pg"];
    let (ok, stdout, stderr) = run(
        amtool(&am.url)
            .args(["alert", "add"])
            .args(labels)
            .arg("--annotation=summary=replica 3 lags 40s")
            .arg(format!("--start={start}")),
        WAIT,
    )
    .await?;
    assert!(ok, "amtool failed:\n{stdout}\n{stderr}");

    let n = ws
        .take("the firing alert via Alertmanager", |n| {
            n["type"] == "alert"
        })
        .await
        .with_context(|| am.log())?;
    assert_eq!(n["labels"]["error-code"], "ReplicaLag", "{n}");
    assert_eq!(n["labels"]["service"], "pg", "{n}");
    assert_eq!(n["severity"], "high", "{n}");
    assert_eq!(n["samples"], json!(["replica 3 lags 40s"]), "{n}");
    assert_eq!(
        n["key"], "ReplicaLag|pg|tocsin",
        "the receiver reaches metadata: {n}"
    );
    assert_eq!(
        metric(
            &t,
            "tocsin_events_received_total",
            &[("source", "alertmanager")]
        )
        .await?,
        1.0
    );

    // Resolve it: the same alert with an end in the past.
    let (ok, stdout, stderr) = run(
        amtool(&am.url)
            .args(["alert", "add"])
            .args(labels)
            .arg("--annotation=summary=replica 3 lags 40s")
            .arg(format!("--start={start}"))
            .arg(format!("--end={}", rfc3339(-1)?)),
        WAIT,
    )
    .await?;
    assert!(ok, "amtool failed:\n{stdout}\n{stderr}");
    let n = ws
        .take("the resolution via Alertmanager", |n| {
            n["type"] == "resolved"
        })
        .await
        .with_context(|| am.log())?;
    assert_eq!(n["labels"]["source"], "alertmanager", "{n}");
    assert_eq!(n["labels"]["error-code"], "ReplicaLag", "{n}");
    assert_eq!(n["labels"]["service"], "pg", "{n}");
    assert_eq!(
        n["key"], "ReplicaLag|pg|tocsin",
        "the resolution ends the firing alert, under its key: {n}"
    );
    assert_eq!(n["severity"], "high", "{n}");
    assert_eq!(n["status"], "resolved", "{n}");
    assert!(
        n["labels"]["endsAt"]
            .as_str()
            .is_some_and(|e| e.contains('T')),
        "{n}"
    );
    assert_eq!(
        metric(
            &t,
            "tocsin_resolutions_total",
            &[("source", "alertmanager")]
        )
        .await?,
        1.0
    );
    assert_eq!(
        metric(
            &t,
            "tocsin_events_received_total",
            &[("source", "alertmanager")]
        )
        .await?,
        1.0,
        "a resolution is not a new error"
    );
    assert_eq!(
        metric(
            &t,
            "tocsin_ingest_unauthorized_total",
            &[("source", "alertmanager")]
        )
        .await?,
        0.0,
        "Alertmanager sent the bearer token"
    );
    Ok(())
}

// ------------------------------------------------------------ /v1/events

#[tokio::test]
async fn ingest_token_guards_v1_events_and_tocsin_send() -> Result<()> {
    let t = engine(
        vec![(
            "all.toml",
            rule("sources = [\"http\"]", "[\"error-code\", \"service-name\"]"),
        )],
        &[
            ("TOCSIN_INGEST_TOKEN", "events-token"),
            ("TOCSIN_HTTP_MAX_BODY_BYTES", "4096"),
        ],
    )
    .await?;
    let body =
        json!({"errorCode": "TOKEN_CHECK", "severity": "low", "message": "m", "serviceName": "s"});

    let (status, answer) = t.post_events(&body).await?;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("bearer")),
        "{answer}"
    );
    let r = t
        .http
        .post(t.url("/v1/events"))
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    let r = t
        .http
        .post(t.url("/v1/events"))
        .bearer_auth("events-token")
        .json(&body)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(
        metric(
            &t,
            "tocsin_ingest_unauthorized_total",
            &[("source", "http")]
        )
        .await?,
        2.0
    );

    // Oversized: a clear 413.
    let big = json!({"errorCode": "BIG", "severity": "low", "message": "x".repeat(5000), "serviceName": "s"});
    let r = t
        .http
        .post(t.url("/v1/events"))
        .bearer_auth("events-token")
        .json(&big)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 413);
    let answer: Value = r.json().await?;
    assert!(
        answer["error"].as_str().is_some_and(|e| e.contains("4096")),
        "{answer}"
    );

    // `tocsin send` with --token, with TOCSIN_INGEST_TOKEN, and without.
    let send = |token: Option<(&str, &str)>| {
        let mut c = tokio::process::Command::new(tocsin_tests::binary()?);
        c.args([
            "send",
            "--url",
            &t.base,
            "--code",
            "SENT_BY_CLI",
            "--service",
            "cli",
        ])
        .env_remove("TOCSIN_INGEST_TOKEN");
        match token {
            Some(("flag", tok)) => {
                c.args(["--token", tok]);
            }
            Some((_, tok)) => {
                c.env("TOCSIN_INGEST_TOKEN", tok);
            }
            None => {}
        }
        Ok::<_, anyhow::Error>(c)
    };
    let (ok, out, err) = run(&mut send(Some(("flag", "events-token")))?, WAIT).await?;
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = run(&mut send(Some(("env", "events-token")))?, WAIT).await?;
    assert!(ok, "{out}\n{err}");
    let (ok, _, err) = run(&mut send(None)?, WAIT).await?;
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    assert_eq!(
        metric(&t, "tocsin_events_received_total", &[("source", "http")]).await?,
        3.0
    );
    let text = t.http.get(t.url("/metrics")).send().await?.text().await?;
    assert_eq!(
        metric_value(
            &text,
            "tocsin_ingest_unauthorized_total",
            &[("source", "http")]
        ),
        3.0
    );
    Ok(())
}
