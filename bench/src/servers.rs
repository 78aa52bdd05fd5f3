//! Starting and stopping what the figures measure: a fresh `tocsin run`
//! per run (own temp directories, plugins copied from `plugins/dist`, the
//! shared compile cache), Alertmanager, the webhook receiver, and the load
//! generator.
//!
//! Every process is stopped by its own pid (SIGTERM, then SIGKILL after a
//! grace period), also when a figure fails half-way (the `Drop`s).

use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Where everything is, and how much to run.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The repository root (rules/, plugins/dist/).
    pub root: PathBuf,
    /// The `tocsin` binary (release).
    pub tocsin: PathBuf,
    /// The `tocsin-loadgen` binary.
    pub loadgen: PathBuf,
    /// Per-run temp directories go under here.
    pub tmp: PathBuf,
    /// The shared compile cache (`TOCSIN_ENGINE_CACHE`), keyed by content
    /// hash, so a fresh process does not recompile unchanged plugins.
    pub cache: PathBuf,
    /// Runs per figure.
    pub runs: usize,
    /// Fewer and shorter runs (smoke test).
    pub quick: bool,
}

impl Ctx {
    /// `full` normally, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// The built plugin `name`.wasm.
    pub fn plugin(&self, name: &str) -> PathBuf {
        self.root
            .join("plugins")
            .join("dist")
            .join(format!("{name}.wasm"))
    }

    /// The built test plugin `name`.wasm (`tests/plugins/dist`: the
    /// hostile ones; `cargo xtask plugins` builds them with the rest).
    pub fn test_plugin(&self, name: &str) -> PathBuf {
        self.root
            .join("tests")
            .join("plugins")
            .join("dist")
            .join(format!("{name}.wasm"))
    }
}

/// The bundled plugins every tocsin run gets.
pub const PLUGINS: [&str; 6] = [
    "threshold",
    "severity-router",
    "log",
    "websocket",
    "email",
    "webhook",
];

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<ctx.tmp>/<label>-<uuid>`.
    pub fn new(ctx: &Ctx, label: &str) -> Result<Self> {
        let p = ctx.tmp.join(format!(
            "{label}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
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

/// A TCP port on 127.0.0.1 free at the time of asking.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("finding a free port")?
        .local_addr()?
        .port())
}

/// Sends SIGTERM to `child`, waits up to `grace`, then SIGKILLs it.
fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain kill(2) on the pid of a child we own and have not
        // reaped (try_wait above), so the pid cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `lines` lines of a log file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How to start tocsin.
#[derive(Clone, Debug, Default)]
pub struct TocsinSetup {
    /// Copy the repository's default rules (`rules/*.toml`).
    pub default_rules: bool,
    /// Extra rule files: (file name, TOML).
    pub rules: Vec<(String, String)>,
    /// Extra `TOCSIN_*` settings.
    pub env: Vec<(String, String)>,
    /// `host:port` to listen on; default: a free port.
    pub listen: Option<String>,
}

/// A running `tocsin run`.
pub struct Tocsin {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub plugins_dir: PathBuf,
    pub rules_dir: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl Tocsin {
    /// Prepares fresh directories and starts the process; does not wait.
    pub fn spawn(ctx: &Ctx, setup: &TocsinSetup) -> Result<Self> {
        Self::spawn_with(ctx, setup, &[])
    }

    /// [`Self::spawn`], with the test plugins `extra` ([`Ctx::test_plugin`])
    /// beside the bundled ones.
    pub fn spawn_with(ctx: &Ctx, setup: &TocsinSetup, extra: &[&str]) -> Result<Self> {
        if !ctx.tocsin.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p tocsin` (`cargo xtask bench` does)",
                ctx.tocsin.display()
            );
        }
        let dir = TempDir::new(ctx, "tocsin")?;
        let rules_dir = dir.path().join("rules");
        let plugins_dir = dir.path().join("plugins");
        let data_dir = dir.path().join("data");
        for d in [&rules_dir, &plugins_dir, &data_dir] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let bundled = PLUGINS.iter().map(|name| (*name, ctx.plugin(name)));
        let tests = extra.iter().map(|name| (*name, ctx.test_plugin(name)));
        for (name, from) in bundled.chain(tests) {
            std::fs::copy(&from, plugins_dir.join(format!("{name}.wasm"))).with_context(|| {
                format!(
                    "copying {} (build the plugins with `cargo xtask plugins`)",
                    from.display()
                )
            })?;
        }
        if setup.default_rules {
            let src = ctx.root.join("rules");
            for entry in
                std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))?
            {
                let p = entry?.path();
                if let (Some(name), Some("toml")) =
                    (p.file_name(), p.extension().and_then(|e| e.to_str()))
                {
                    std::fs::copy(&p, rules_dir.join(name))
                        .with_context(|| format!("copying {}", p.display()))?;
                }
            }
        }
        for (file, text) in &setup.rules {
            std::fs::write(rules_dir.join(file), text)
                .with_context(|| format!("writing rule {file}"))?;
        }
        let addr = match &setup.listen {
            Some(a) => a.clone(),
            None => format!("127.0.0.1:{}", free_port()?),
        };
        let log = dir.path().join("tocsin.log");
        let out = std::fs::File::create(&log).context("creating tocsin.log")?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&ctx.tocsin);
        cmd.arg("run")
            .arg("--listen")
            .arg(&addr)
            .arg("--rules")
            .arg(&rules_dir)
            .arg("--plugins")
            .arg(&plugins_dir)
            .arg("--data")
            .arg(&data_dir);
        // The caller's own TOCSIN_* settings would change what is measured
        // (and unknown ones make tocsin refuse to start).
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TOCSIN_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("TOCSIN_LOG", "warn")
            .env("TOCSIN_ENGINE_CACHE", &ctx.cache)
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", ctx.tocsin.display()))?;
        Ok(Self {
            child,
            addr,
            plugins_dir,
            rules_dir,
            log,
            _dir: dir,
        })
    }

    /// Starts tocsin and waits for `GET /healthz`.
    pub async fn start(ctx: &Ctx, setup: &TocsinSetup) -> Result<Self> {
        Self::start_with(ctx, setup, &[]).await
    }

    /// [`Self::start`], with the test plugins `extra` ([`Self::spawn_with`]).
    pub async fn start_with(ctx: &Ctx, setup: &TocsinSetup, extra: &[&str]) -> Result<Self> {
        let mut t = Self::spawn_with(ctx, setup, extra)?;
        t.wait_ready("/healthz").await?;
        Ok(t)
    }

    /// Waits until `path` answers 200 (`/healthz`, or `/readyz` when
    /// RabbitMQ must be connected too), failing if the process exits.
    pub async fn wait_ready(&mut self, path: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "tocsin exited during startup ({status}); its log:\n{}",
                    tail(&self.log, 30)
                );
            }
            if let Ok((200, _)) = crate::http::get(&self.addr, path).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tocsin did not answer 200 on {path} within 60 s; its log:\n{}",
                    tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 30)
    }

    /// Stops it (SIGTERM, SIGKILL after 10 s).
    pub fn stop(mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Tocsin {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// Alertmanager's binary on `PATH` (Debian's `prometheus-alertmanager`, or
/// upstream's `alertmanager`).
pub fn alertmanager_binary() -> Result<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!(
        "Alertmanager binary not found: install prometheus-alertmanager \
         (`apt-get install prometheus-alertmanager`, or `cargo xtask clients`)"
    )
}

/// `prometheus-alertmanager --version`, first line.
pub fn alertmanager_version() -> Result<String> {
    let bin = alertmanager_binary()?;
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    // Go's kingpin prints the version on stderr.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text.lines().next().unwrap_or("unknown").trim().to_string())
}

/// A running Alertmanager: clustering off, storage in a temp dir, one
/// route grouping by alertname, delivering to `webhook`.
pub struct Alertmanager {
    child: Child,
    pub addr: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Alertmanager {
    /// Starts it and waits for `GET /-/ready`.
    pub async fn start(ctx: &Ctx, webhook: &str) -> Result<Self> {
        let bin = alertmanager_binary()?;
        let dir = TempDir::new(ctx, "alertmanager")?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: false\n"
            ),
        )
        .context("writing alertmanager.yml")?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = dir.path().join("alertmanager.log");
        let out = std::fs::File::create(&log).context("creating alertmanager.log")?;
        let err = out.try_clone()?;
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut am = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = am.child.try_wait()? {
                bail!(
                    "Alertmanager exited during startup ({status}); its log:\n{}",
                    tail(&am.log, 30)
                );
            }
            if let Ok((200, _)) = crate::http::get(&am.addr, "/-/ready").await {
                return Ok(am);
            }
            if Instant::now() > deadline {
                bail!(
                    "Alertmanager was not ready within 60 s; its log:\n{}",
                    tail(&am.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// A running webhook receiver (`tocsin-loadgen receive`).
pub struct Receiver {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl Receiver {
    /// Starts one on a free port; it exits when its stdin closes.
    pub async fn start(ctx: &Ctx) -> Result<Self> {
        let mut child = Command::new(&ctx.loadgen)
            .arg("receive")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} receive", ctx.loadgen.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the receiver"))?;
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await
        .context("waiting for the receiver")?
        .context("reading the receiver's address")?;
        let v: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("the receiver did not start: {line:?}"))?;
        let addr = v["addr"]
            .as_str()
            .ok_or_else(|| anyhow!("the receiver printed no address: {line:?}"))?
            .to_string();
        Ok(Self { child, stdin, addr })
    }

    /// The URL to deliver to.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        self.stdin.take();
        terminate(&mut self.child, Duration::from_secs(2));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stdin.take();
        terminate(&mut self.child, Duration::from_secs(2));
    }
}

/// A load generator running in the background.
pub struct Background {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Background {
    /// Tells it to stop (closes its stdin), waits and parses its result.
    pub async fn finish(mut self) -> Result<Value> {
        self.stdin.take();
        let child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("the load generator was already collected"))?;
        collect(child).await
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stdin.take();
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

fn loadgen_command(ctx: &Ctx, args: Vec<String>) -> Command {
    let mut cmd = Command::new(&ctx.loadgen);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

async fn collect(child: Child) -> Result<Value> {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .context("waiting for the load generator")?
        .context("reading the load generator's output")?;
    if !out.status.success() {
        bail!("the load generator failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .with_context(|| format!("the load generator printed no result: {text:?}"))
}

/// Runs `tocsin-loadgen ARGS` to completion; returns its JSON result.
pub async fn loadgen(ctx: &Ctx, args: Vec<String>) -> Result<Value> {
    let child = loadgen_command(ctx, args)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", ctx.loadgen.display()))?;
    collect(child).await
}

/// Starts `tocsin-loadgen ARGS` in the background (stdin piped, for
/// `--until-eof`).
pub fn loadgen_background(ctx: &Ctx, args: Vec<String>) -> Result<Background> {
    let mut child = loadgen_command(ctx, args)
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", ctx.loadgen.display()))?;
    let stdin = child.stdin.take();
    Ok(Background {
        child: Some(child),
        stdin,
    })
}

/// `vec!["--a", "b"]` from `&["--a", "b"]` and formatted values.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        vec![$($a.to_string()),*]
    };
}
