//! Real peers for delivery tests: an SMTP server (aiosmtpd, over TCP) and
//! an HTTP webhook receiver with scripted answers.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{root, TempDir};

/// How an [`SmtpSink`] offers TLS (with a certificate and key in PEM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkTls {
    /// STARTTLS offered and required before `MAIL`.
    StartTls,
    /// STARTTLS offered, mail in clear accepted too (recorded with
    /// `"tls": false`): shows whether a client falls back to clear.
    StartTlsOptional,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

impl SinkTls {
    fn arg(self) -> &'static str {
        match self {
            SinkTls::StartTls => "starttls",
            SinkTls::StartTlsOptional => "starttls-optional",
            SinkTls::Implicit => "implicit",
        }
    }
}

/// A running aiosmtpd server that records messages.
pub struct SmtpSink {
    child: Option<Child>,
    pub port: u16,
    out: PathBuf,
    creds: Option<(String, String)>,
    tls: Option<(SinkTls, PathBuf, PathBuf)>,
    _tmp: TempDir,
}

impl SmtpSink {
    /// Starts a server on a free port (optionally requiring AUTH).
    pub async fn start(creds: Option<(&str, &str)>) -> Result<Self> {
        let port = super::free_port()?;
        Self::start_on(port, creds).await
    }

    /// A sink for `port` that is not started yet (to test "server down").
    pub fn stopped(port: u16) -> Result<Self> {
        let tmp = TempDir::new("smtp")?;
        Ok(Self {
            child: None,
            port,
            out: tmp.path().join("mail.jsonl"),
            creds: None,
            tls: None,
            _tmp: tmp,
        })
    }

    /// Starts a server on `port`.
    pub async fn start_on(port: u16, creds: Option<(&str, &str)>) -> Result<Self> {
        let mut s = Self::stopped(port)?;
        s.creds = creds.map(|(u, p)| (u.to_string(), p.to_string()));
        s.run().await?;
        Ok(s)
    }

    /// Starts a server on a free port offering TLS per `mode`, with the
    /// certificate chain `cert` and private key `key` (PEM files).
    pub async fn start_tls(mode: SinkTls, cert: &Path, key: &Path) -> Result<Self> {
        let mut s = Self::stopped(super::free_port()?)?;
        s.tls = Some((mode, cert.to_path_buf(), key.to_path_buf()));
        s.run().await?;
        Ok(s)
    }

    /// (Re)starts the server process.
    pub async fn run(&mut self) -> Result<()> {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.env("PYTHONWARNINGS", "ignore");
        cmd.arg(root().join("tests/support/smtp_sink.py"))
            .arg(self.port.to_string())
            .arg(&self.out);
        if let Some((u, p)) = &self.creds {
            cmd.arg(u).arg(p);
        }
        if let Some((mode, cert, key)) = &self.tls {
            cmd.arg("--tls").arg(mode.arg()).arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("starting aiosmtpd (python3-aiosmtpd)")?;
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("SMTP sink exited: {status}");
            }
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("the SMTP server did not listen on {addr} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Every message received so far.
    pub fn messages(&self) -> Result<Vec<Value>> {
        let text = match std::fs::read_to_string(&self.out) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One request the webhook receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Path and query string, e.g. `/hook?access_token=t&sign=...`.
    pub uri: String,
    pub idempotency_key: String,
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct ReceiverState {
    script: VecDeque<u16>,
    default: u16,
    got: Vec<Received>,
}

/// An HTTP server on 127.0.0.1 answering POSTs with scripted statuses.
pub struct WebhookReceiver {
    pub port: u16,
    state: Arc<Mutex<ReceiverState>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Answers with `script` in order, then `default`.
    pub async fn start(script: &[u16], default: u16) -> Result<Self> {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri};
        use axum::routing::post;

        let state = Arc::new(Mutex::new(ReceiverState {
            script: script.iter().copied().collect(),
            default,
            got: Vec::new(),
        }));
        async fn hook(
            State(s): State<Arc<Mutex<ReceiverState>>>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let mut s = match s.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let status = s.script.pop_front().unwrap_or(s.default);
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            s.got.push(Received {
                uri: uri.to_string(),
                idempotency_key: key,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                status,
            });
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
        }
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port, state, task })
    }

    /// The URL to configure in a rule.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        match self.state.lock() {
            Ok(s) => s.got.clone(),
            Err(p) => p.into_inner().got.clone(),
        }
    }

    /// A rule sending every alert of `code` (threshold 1) to this
    /// receiver through the `webhook` plugin, tried `attempts` times.
    pub fn rule(&self, code: &str, attempts: u32) -> String {
        format!(
            r#"
[match]
codes = ["{code}"]
[aggregate]
plugin = "threshold"
config = {{ threshold = 1, window = "1h" }}
[[channels]]
plugin = "webhook"
config = {{ url = "{}" }}
grants = {{ http = ["127.0.0.1:{}"] }}
retry = {{ attempts = {attempts} }}
"#,
            self.url(),
            self.port
        )
    }

    /// From now on answer every request with `status`.
    pub fn answer(&self, status: u16) {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        s.script.clear();
        s.default = status;
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
