//! Test support: start the real `tocsin` binary on a free port with its own
//! rules, plugins and data directories, and talk to it over real HTTP and
//! WebSocket connections. Waits are conditions with deadlines, never bare
//! sleeps.

use std::ffi::OsStr;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub mod load;
pub mod peers;
pub mod rabbit;
pub mod redis_proxy;
pub mod tls;

/// The repository root.
pub fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Appends `line` to `target/test-figures.txt`: figures a passing test
/// measured (its output is captured), for a closing note or a CI log.
pub fn record_figure(line: &str) {
    use std::io::Write;
    let path = target_dir().join("test-figures.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// The `tocsin` binary under test (built by `cargo xtask test`).
pub fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TOCSIN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let p = target_dir().join("debug").join("tocsin");
    if p.is_file() {
        Ok(p)
    } else {
        bail!("{} not found: run the tests with `cargo xtask test` (it builds the binary and the plugins)", p.display())
    }
}

/// A built plugin component (`plugins/dist` or `tests/plugins/dist`).
pub fn plugin_file(name: &str) -> Result<PathBuf> {
    for dir in ["plugins/dist", "tests/plugins/dist"] {
        let p = root().join(dir).join(format!("{name}.wasm"));
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("plugin {name}.wasm not built: run `cargo xtask plugins`")
}

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Result<Self> {
        let p = target_dir()
            .join("test-tmp")
            .join(format!("{label}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(Self(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start an engine.
pub struct Setup {
    /// Plugin names to copy into the plugins directory.
    pub plugins: Vec<&'static str>,
    /// Copy the repository's default rules.
    pub default_rules: bool,
    /// Extra rule files: (file name, TOML text).
    pub rules: Vec<(String, String)>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// A configuration file's text (`--config`), for settings with no
    /// environment variable; empty for none.
    pub config: String,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            plugins: vec![
                "threshold",
                "severity-router",
                "log",
                "websocket",
                "email",
                "webhook",
            ],
            default_rules: true,
            rules: Vec::new(),
            env: vec![("TOCSIN_ENGINE_WORKERS".into(), "1".into())],
            config: String::new(),
        }
    }
}

/// A running `tocsin run` process.
pub struct Tocsin {
    child: Option<Child>,
    pub base: String,
    pub rules_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    listen: String,
    env: Vec<(String, String)>,
    config: Option<PathBuf>,
    pub http: reqwest::Client,
    _tmp: TempDir,
}

/// A TCP port free at the time of asking.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Tocsin {
    /// Prepares directories per `setup` and starts the engine.
    pub async fn start(setup: Setup) -> Result<Self> {
        let tmp = TempDir::new("engine")?;
        let rules_dir = tmp.path().join("rules");
        let plugins_dir = tmp.path().join("plugins");
        let data_dir = tmp.path().join("data");
        std::fs::create_dir_all(&rules_dir)?;
        std::fs::create_dir_all(&plugins_dir)?;
        for name in &setup.plugins {
            std::fs::copy(plugin_file(name)?, plugins_dir.join(format!("{name}.wasm")))?;
        }
        if setup.default_rules {
            for entry in std::fs::read_dir(root().join("rules"))? {
                let p = entry?.path();
                if p.extension().is_some_and(|e| e == "toml") {
                    std::fs::copy(&p, rules_dir.join(p.file_name().unwrap_or_default()))?;
                }
            }
        }
        for (file, text) in &setup.rules {
            std::fs::write(rules_dir.join(file), text)?;
        }
        let config = (!setup.config.is_empty())
            .then(|| -> Result<PathBuf> {
                let path = tmp.path().join("tocsin.toml");
                std::fs::write(&path, &setup.config)?;
                Ok(path)
            })
            .transpose()?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let mut t = Self {
            child: None,
            base: format!("http://{listen}"),
            rules_dir,
            plugins_dir,
            data_dir,
            listen,
            env: setup.env,
            config,
            http: reqwest::Client::new(),
            _tmp: tmp,
        };
        t.spawn().await?;
        Ok(t)
    }

    /// Starts the process (again) on the same directories and port.
    pub async fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(binary()?);
        cmd.arg("run")
            .arg("--listen")
            .arg(&self.listen)
            .arg("--rules")
            .arg(&self.rules_dir)
            .arg("--plugins")
            .arg(&self.plugins_dir)
            .arg("--data")
            .arg(&self.data_dir)
            .args(
                self.config
                    .iter()
                    .flat_map(|c| [OsStr::new("--config"), c.as_os_str()]),
            )
            .env(
                "TOCSIN_ENGINE_CACHE",
                target_dir().join("test-plugin-cache"),
            )
            .env(
                "TOCSIN_LOG",
                std::env::var("TOCSIN_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // Tests of other parts count events exactly; the watch's own
            // events would add to them. tests/watch.rs turns it on.
            .env("TOCSIN_WATCH_ENABLED", "false")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting tocsin")?;
        self.child = Some(child);
        let health = format!("{}/healthz", self.base);
        let http = self.http.clone();
        let child = self.child.as_mut().ok_or_else(|| anyhow!("no child"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("tocsin exited during startup: {status}");
            }
            if let Ok(r) = http.get(&health).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("tocsin did not become healthy on {health} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    child.kill()?;
                    bail!("tocsin did not stop on SIGTERM within 20 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let child = self.child.as_ref().context("tocsin is not running")?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} failed: {status}");
        }
        Ok(())
    }

    /// The process's resident memory (`VmRSS` in `/proc/PID/status`), in
    /// bytes: what the host holds, seen from outside.
    pub fn rss_bytes(&self) -> Result<u64> {
        let child = self.child.as_ref().context("tocsin is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .context("no VmRSS in /proc/PID/status")?
            .parse()?;
        Ok(kb * 1024)
    }

    /// Kills the process with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts `body` to `/v1/events`; returns status and JSON answer.
    pub async fn post_events(&self, body: &Value) -> Result<(u16, Value)> {
        let r = self
            .http
            .post(self.url("/v1/events"))
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Posts `n` seed events and asserts they were accepted.
    pub async fn send(&self, code: &str, service: &str, n: usize, message: &str) -> Result<()> {
        let events: Vec<Value> = (0..n)
            .map(|i| event(code, "high", service, &format!("{message} {i}")))
            .collect();
        let (status, body) = self.post_events(&Value::Array(events)).await?;
        if status != 202 {
            bail!("POST /v1/events answered {status}: {body}");
        }
        Ok(())
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        Ok(self
            .http
            .get(self.url(path))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Sum of every sample of metric `name` whose labels contain all `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(metric_value(&text, name, labels))
    }

    /// Waits until `tocsin_events_processed_total` reaches `n`.
    pub async fn wait_processed(&self, n: f64) -> Result<()> {
        let waited = wait_for(
            &format!("{n} events processed"),
            Duration::from_secs(30),
            || async { Ok(self.metric("tocsin_events_processed_total", &[]).await? >= n) },
        )
        .await;
        if waited.is_err() {
            let seen = self
                .metric("tocsin_events_processed_total", &[])
                .await
                .unwrap_or(-1.0);
            let received = self
                .metric("tocsin_events_received_total", &[])
                .await
                .unwrap_or(-1.0);
            return waited.with_context(|| format!("processed {seen}, received {received}"));
        }
        Ok(())
    }

    /// Opens `/v1/ws` with an optional query string.
    pub async fn ws(&self, query: &str) -> Result<Ws> {
        let url = format!("ws://{}/v1/ws{query}", self.listen);
        let (stream, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Ws { stream })
    }

    /// Replaces a rule file atomically (write then rename).
    pub fn write_rule(&self, file: &str, text: &str) -> Result<()> {
        let tmp = self.rules_dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.rules_dir.join(file))?;
        Ok(())
    }

    /// `tocsin_plugin_errors_total{plugin, kind}`: `plugin`'s failed calls
    /// of one kind (`deadline`, `memory`, `trap`, `quota`, `error`).
    pub async fn plugin_errors(&self, plugin: &str, kind: &str) -> Result<f64> {
        self.metric(
            "tocsin_plugin_errors_total",
            &[("plugin", plugin), ("kind", kind)],
        )
        .await
    }

    /// The `/v1/plugins` entry of `name`.
    pub async fn plugin_status(&self, name: &str) -> Result<Value> {
        let v = self.get_json("/v1/plugins").await?;
        v["plugins"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
            .ok_or_else(|| anyhow!("plugin {name} not in /v1/plugins: {v}"))
    }

    /// The `/v1/rules` entry of `name`.
    pub async fn rule_status(&self, name: &str) -> Result<Value> {
        let v = self.get_json("/v1/rules").await?;
        v["rules"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
            .ok_or_else(|| anyhow!("rule {name} not in /v1/rules: {v}"))
    }
}

impl Drop for Tocsin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A WebSocket client of `/v1/ws`.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    /// The next notification (JSON), failing after `within`.
    pub async fn next(&mut self, within: Duration) -> Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.stream.next())
                .await
                .map_err(|_| anyhow!("no WebSocket message within {within:?}"))?;
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("WebSocket error: {e}"),
                None => bail!("WebSocket closed"),
            }
        }
    }
}

/// A seed-format event.
pub fn event(code: &str, severity: &str, service: &str, message: &str) -> Value {
    json!({ "errorCode": code, "severity": severity, "serviceName": service, "message": message })
}

/// Parses a Prometheus text exposition: the sum of samples of `name` whose
/// label set includes every pair of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
        if ok {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

/// How far a long wait has come: whether it is done, a figure that moves
/// while work is being done, and a description for the failure message.
pub struct Progress {
    pub done: bool,
    pub figure: f64,
    pub state: String,
}

/// Polls `check` until it reports done; fails with `what` only when its
/// figure stopped moving for `stall`. For waits whose length depends on
/// the machine's load (rule: correct on a busy machine): a slow machine
/// makes them longer, a stuck engine still fails.
pub async fn wait_progressing<F, Fut>(what: &str, stall: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Progress>>,
{
    let mut last: Option<f64> = None;
    let mut moved_at = Instant::now();
    loop {
        let state = match check().await {
            Ok(p) if p.done => return Ok(()),
            Ok(p) => {
                if last != Some(p.figure) {
                    last = Some(p.figure);
                    moved_at = Instant::now();
                }
                p.state
            }
            Err(e) => format!("{e:#}"),
        };
        if moved_at.elapsed() > stall {
            return Err(anyhow!(
                "nothing moved for {stall:?} while waiting for {what}; last: {state}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns true; fails with `what` after `within`.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + within;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            return Err(match last_err {
                Some(e) => {
                    anyhow!("timed out after {within:?} waiting for {what}; last error: {e:#}")
                }
                None => anyhow!("timed out after {within:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
