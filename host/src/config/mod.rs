//! Configuration: one TOML file with a section per component, every key
//! overridable from the environment as `TOCSIN_<SECTION>_<KEY>`.
//!
//! [`KEYS`] is the single list of known keys: it drives environment
//! parsing (so a value is typed by its key, and `TOCSIN_SMTP_PASSWORD=1234`
//! stays a string) and the listing in `tocsin run --help`.
//!
//! The table lives in [`keys`], one entry per setting with its default
//! and doc; a test here checks it agrees with the section structs.

mod keys;
mod quotas;
mod tls;
mod watch;
pub use keys::{Key, Kind, KEYS};
pub use quotas::Quotas;
pub use tls::TrustedRoots;
pub use watch::WatchConfig;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `[http]`
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    pub max_body_bytes: usize,
    /// Bearer token of the admin surface ([`crate::api::admin`]).
    pub admin_token: String,
    /// Whether the admin views are open to read without the token.
    pub read_only: bool,
}

impl std::fmt::Debug for HttpConfig {
    /// Never prints the token, only whether it is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = if self.admin_token.is_empty() {
            "unset"
        } else {
            "set"
        };
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("admin_token", &set)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 << 20,
            admin_token: String::new(),
            read_only: false,
        }
    }
}

/// `[ingest]`: who may post events, and how Sentry events are coded. The
/// body size limit is `[http] max_body_bytes`, applied after decompression
/// too.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Bearer token for `POST /v1/events`; empty accepts anyone.
    pub token: String,
    /// Bearer token for `/api/v2/*` and `/v1/ingest/alertmanager`.
    pub alertmanager_token: String,
    /// Accepted Sentry DSN public keys; empty accepts any key.
    pub sentry_keys: Vec<String>,
    /// `type`, `raw-type`, or a fixed errorCode for Sentry exceptions.
    pub sentry_exception_code: String,
    /// errorCode of Sentry message events.
    pub sentry_message_code: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            alertmanager_token: String::new(),
            sentry_keys: Vec::new(),
            sentry_exception_code: "type".into(),
            sentry_message_code: "MESSAGE".into(),
        }
    }
}

impl std::fmt::Debug for IngestConfig {
    /// Never prints the secrets, only whether they are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "unset" } else { "set" };
        f.debug_struct("IngestConfig")
            .field("token", &set(&self.token))
            .field("alertmanager_token", &set(&self.alertmanager_token))
            .field("sentry_keys", &self.sentry_keys.len())
            .field("sentry_exception_code", &self.sentry_exception_code)
            .field("sentry_message_code", &self.sentry_message_code)
            .finish()
    }
}

/// `[engine]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub rules: PathBuf,
    pub plugins: PathBuf,
    pub data: PathBuf,
    /// Compile cache; `None` means `<data>/cache`.
    pub cache: Option<PathBuf>,
    pub workers: usize,
    pub queue: usize,
    pub dedup_ttl_secs: u64,
    pub traces: usize,
    /// The longest a graceful shutdown waits ([`crate::shutdown`]).
    pub shutdown_secs: u64,
    /// How long a removed rule's state outlives it ([`crate::catalog`]).
    pub purge_removed_after_secs: u64,
    /// How often escalation steps are checked ([`crate::pipeline::escalate`]).
    pub escalation_tick_ms: u64,
    /// Whether the dashboard's counters are kept ([`crate::stats`]).
    pub stats: bool,
    /// How often they are flushed into the state backend.
    pub stats_flush_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            rules: "rules".into(),
            plugins: "plugins/dist".into(),
            data: "data".into(),
            cache: None,
            workers: 2,
            queue: 4096,
            dedup_ttl_secs: 3600,
            traces: 10_000,
            shutdown_secs: 10,
            purge_removed_after_secs: 300,
            escalation_tick_ms: 1000,
            stats: true,
            stats_flush_ms: 2000,
        }
    }
}

/// `[sandbox]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    pub call_timeout_ms: u64,
    pub memory_mb: usize,
    pub instances: u32,
    /// `[sandbox.plugins.NAME]`: limits of one plugin (by file name without
    /// `.wasm`) instead of the defaults above — a Python or JavaScript
    /// plugin may need more memory or time than a Rust one. File only (no
    /// environment variable).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, PluginSandboxConfig>,
    /// `[sandbox.quotas]`: what a plugin may make the host hold (state,
    /// alerts, deliveries, logs). File only.
    pub quotas: Quotas,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            call_timeout_ms: 200,
            memory_mb: 64,
            instances: 256,
            plugins: BTreeMap::new(),
            quotas: Quotas::default(),
        }
    }
}

/// `[sandbox.plugins.NAME]`: what is unset falls back to `[sandbox]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSandboxConfig {
    pub call_timeout_ms: Option<u64>,
    pub memory_mb: Option<usize>,
}

/// `[amqp]`
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    pub url: String,
    pub exchange: String,
    pub binding: Vec<String>,
    pub queue: String,
    pub prefetch: u16,
    pub max_retries: u32,
    pub retry_delay_ms: u64,
    /// Extra trusted roots for `amqps://` ([`TrustedRoots`]); empty: none.
    pub ca_file: String,
    /// The dead-letter recovery loop ([`crate::source::amqp::recovery`]).
    pub recovery: bool,
    pub recovery_every_secs: u64,
    pub recovery_max_age_secs: u64,
    pub recovery_per_sec: u32,
    pub recovery_max_replays: u32,
    pub recovery_quiet_secs: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            exchange: "tocsin.events".into(),
            binding: vec!["system.error.#".into()],
            queue: "tocsin.events".into(),
            prefetch: 512,
            max_retries: 3,
            retry_delay_ms: 1000,
            ca_file: String::new(),
            recovery: true,
            recovery_every_secs: 30,
            recovery_max_age_secs: 86_400,
            recovery_per_sec: 50,
            recovery_max_replays: 3,
            recovery_quiet_secs: 300,
        }
    }
}

impl std::fmt::Debug for AmqpConfig {
    /// Never prints the URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &if self.url.is_empty() { "" } else { "<set>" })
            .field("exchange", &self.exchange)
            .field("binding", &self.binding)
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("ca_file", &self.ca_file)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

/// `[redis]`
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
    pub prefix: String,
    pub outage_after_ms: u64,
    pub slow_ms: u64,
    pub heartbeat_ttl_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            prefix: "tocsin:".into(),
            outage_after_ms: 10_000,
            slow_ms: 250,
            heartbeat_ttl_ms: 15_000,
        }
    }
}

impl RedisConfig {
    /// How long to wait on Redis before calling it an outage.
    pub fn patience(&self) -> crate::state::Patience {
        crate::state::Patience {
            outage_after: std::time::Duration::from_millis(self.outage_after_ms.max(1)),
            slow: std::time::Duration::from_millis(self.slow_ms),
        }
    }

    /// How long a silent instance counts as alive (at least 3 s).
    pub fn heartbeat_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.heartbeat_ttl_ms.max(3_000))
    }
}

impl std::fmt::Debug for RedisConfig {
    /// Never prints credentials in the URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &if self.url.is_empty() { "" } else { "<set>" })
            .field("prefix", &self.prefix)
            .field("outage_after_ms", &self.outage_after_ms)
            .field("slow_ms", &self.slow_ms)
            .field("heartbeat_ttl_ms", &self.heartbeat_ttl_ms)
            .finish()
    }
}

/// `[delivery]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub attempts: u32,
    pub base_ms: u64,
    pub cap_ms: u64,
    pub concurrency: usize,
    pub retention_hours: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_ms: 1000,
            cap_ms: 30_000,
            concurrency: 64,
            retention_hours: 168,
        }
    }
}

/// `[smtp]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub from: String,
    pub tls: String,
    /// Extra trusted roots for `starttls` / `implicit` ([`TrustedRoots`]);
    /// empty: none.
    pub ca_file: String,
    pub to: Vec<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 25,
            username: String::new(),
            password: String::new(),
            from: "tocsin@localhost".into(),
            tls: "none".into(),
            ca_file: String::new(),
            to: Vec::new(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub engine: EngineConfig,
    pub sandbox: SandboxConfig,
    pub amqp: AmqpConfig,
    pub redis: RedisConfig,
    pub delivery: DeliveryConfig,
    pub smtp: SmtpConfig,
    pub watch: WatchConfig,
}

/// A configuration problem, saying where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    /// A file a setting names is unusable; the reason names both.
    #[error("{0}")]
    Setting(String),
}

impl Config {
    /// Loads `file` (if given), then applies `TOCSIN_*` variables from `env`,
    /// then checks the files the settings name (the `ca_file`s), so a bad
    /// one stops `tocsin run` and `tocsin check` at once.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                Self::from_text(&path.display().to_string(), &text, env)?
            }
            None => Self::from_table(toml::Table::new(), "configuration", env)?,
        };
        config.check_files()?;
        Ok(config)
    }

    /// Reads each `ca_file` set: readable, PEM, certificates.
    fn check_files(&self) -> Result<(), ConfigError> {
        for (setting, path) in [
            ("[smtp] ca_file", &self.smtp.ca_file),
            ("[amqp] ca_file", &self.amqp.ca_file),
        ] {
            TrustedRoots::load(setting, path).map_err(ConfigError::Setting)?;
        }
        Ok(())
    }

    /// Reads `text` (the file `origin`, named in errors), then applies
    /// `TOCSIN_*` variables from `env`. Pure, so the fuzzer drives it.
    pub fn from_text(
        origin: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let table = toml::from_str::<toml::Table>(text).map_err(|e| ConfigError::File {
            path: origin.to_string(),
            reason: one_line_error(text, &e),
        })?;
        Self::from_table(table, origin, env)
    }

    fn from_table(
        mut table: toml::Table,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("TOCSIN_") else {
                continue;
            };
            // Process-level knobs read elsewhere, not configuration keys:
            // the log filter and plugin profiling (see the README).
            if matches!(rest, "LOG" | "WASM_PROFILE") {
                continue;
            }
            let rest = rest.to_ascii_lowercase();
            let key = KEYS
                .iter()
                .find(|k| rest == format!("{}_{}", k.section, k.key))
                .ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    reason: "not a known setting (see `tocsin run --help`)".into(),
                })?;
            let typed = match key.kind {
                Kind::Str => toml::Value::String(value.clone()),
                Kind::Int => value
                    .trim()
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .map_err(|_| ConfigError::Env {
                        var: var.clone(),
                        reason: format!("expected an integer, got {value:?}"),
                    })?,
                Kind::Bool => value
                    .trim()
                    .parse::<bool>()
                    .map(toml::Value::Boolean)
                    .map_err(|_| ConfigError::Env {
                        var: var.clone(),
                        reason: format!("expected true or false, got {value:?}"),
                    })?,
                Kind::List => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                ),
            };
            let section = table
                .entry(key.section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = section {
                t.insert(key.key.to_string(), typed);
            }
        }
        table.try_into::<Config>().map_err(|e| ConfigError::File {
            path: origin.to_string(),
            reason: e.to_string().trim_end().to_string(),
        })
    }

    /// The environment-variable listing shown by `tocsin run --help`.
    pub fn env_help() -> String {
        let mut out =
            String::from("Every setting can be given in the config file or the environment:\n");
        let mut section = "";
        for k in KEYS {
            if k.section != section {
                section = k.section;
                out.push_str(&format!("  [{section}]\n"));
            }
            let var = format!("TOCSIN_{}_{}", k.section, k.key).to_ascii_uppercase();
            let default = if k.default.is_empty() {
                "\"\""
            } else {
                k.default
            };
            out.push_str(&format!("    {:<34} {} (default {default})\n", var, k.doc));
        }
        out.push_str("  TOCSIN_LOG sets the log filter (e.g. info, tocsin=debug).\n");
        out
    }
}

/// Renders a TOML error on one line: `line L, column C: message`, so it
/// reads well in logs, `tocsin check` and the status API.
pub fn one_line_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_with_typed_values() {
        let env = vec![
            ("TOCSIN_HTTP_LISTEN".to_string(), "0.0.0.0:9".to_string()),
            ("TOCSIN_SMTP_PASSWORD".to_string(), "1234".to_string()),
            ("TOCSIN_SMTP_TO".to_string(), "a@x.io, b@x.io".to_string()),
            ("TOCSIN_ENGINE_WORKERS".to_string(), "3".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let c = Config::load(None, env).expect("loads");
        assert_eq!(c.http.listen, "0.0.0.0:9");
        assert_eq!(c.smtp.password, "1234");
        assert_eq!(c.smtp.to, vec!["a@x.io".to_string(), "b@x.io".to_string()]);
        assert_eq!(c.engine.workers, 3);
    }

    #[test]
    fn an_unreadable_ca_file_stops_loading_with_its_path() {
        let missing = std::env::temp_dir().join(format!("tocsin-no-ca-{}.pem", std::process::id()));
        let missing = missing.display().to_string();
        for var in ["TOCSIN_SMTP_CA_FILE", "TOCSIN_AMQP_CA_FILE"] {
            let err = Config::load(None, vec![(var.to_string(), missing.clone())])
                .expect_err("a missing CA file");
            let text = err.to_string();
            assert!(
                text.contains(&missing) && text.contains("ca_file"),
                "{text}"
            );
        }
    }

    #[test]
    fn process_knobs_are_not_config_keys() {
        let env = vec![
            ("TOCSIN_LOG".to_string(), "debug".to_string()),
            ("TOCSIN_WASM_PROFILE".to_string(), "perfmap".to_string()),
        ];
        Config::load(None, env).expect("TOCSIN_LOG and TOCSIN_WASM_PROFILE are accepted");
    }

    #[test]
    fn unknown_and_mistyped_settings_are_named() {
        let err = Config::load(
            None,
            vec![("TOCSIN_HTTP_LISTN".to_string(), "x".to_string())],
        )
        .expect_err("unknown");
        assert!(err.to_string().contains("TOCSIN_HTTP_LISTN"), "{err}");
        let err = Config::load(
            None,
            vec![("TOCSIN_ENGINE_WORKERS".to_string(), "two".to_string())],
        )
        .expect_err("type");
        assert!(err.to_string().contains("integer"), "{err}");
    }

    #[test]
    fn one_plugin_gets_its_own_limits_and_typos_are_refused() {
        let dir = std::env::temp_dir().join(format!("tocsin-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("limits.toml");
        std::fs::write(&file, "[sandbox.plugins.py-agg]\nmemory_mb = 128\n").expect("write");
        let c = Config::load(Some(&file), Vec::new()).expect("valid");
        let limits = crate::plugin::SandboxLimits::from_config(&c.sandbox);
        assert_eq!(limits.memory_of("py-agg"), 128 << 20);
        assert_eq!(limits.memory_of("other"), 64 << 20);
        assert_eq!(
            limits.call_timeout_of("py-agg"),
            std::time::Duration::from_millis(200)
        );
        std::fs::write(&file, "[sandbox.plugins.py-agg]\nmemory = 128\n").expect("write");
        let err = Config::load(Some(&file), Vec::new()).expect_err("typo");
        assert!(err.to_string().contains("unknown field `memory`"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_key_has_a_field() {
        let env: Vec<(String, String)> = KEYS
            .iter()
            .map(|k| {
                let v = match k.kind {
                    Kind::Int => "1",
                    Kind::Bool => "true",
                    _ => "x",
                };
                (
                    format!("TOCSIN_{}_{}", k.section, k.key).to_ascii_uppercase(),
                    v.to_string(),
                )
            })
            .collect();
        // `from_text`: the values are placeholders, not files to check.
        Config::from_text("environment", "", env).expect("every documented key deserializes");
    }
    /// The key table (help, environment, docs) and the `Default` impls
    /// (what runs) are two writings of each default: they must agree, and
    /// every field must have its key.
    #[test]
    fn key_table_defaults_are_the_defaults_that_run() {
        let defaults = toml::Value::try_from(Config::default()).expect("serializes");
        let mut fields = std::collections::BTreeSet::new();
        if let Some(sections) = defaults.as_table() {
            for (section, table) in sections {
                for (key, value) in table.as_table().into_iter().flatten() {
                    // A sub-section (`[sandbox.quotas]`) is file only, with
                    // its own doc comments and example (tocsin.example.toml).
                    if !value.is_table() {
                        fields.insert(format!("{section}.{key}"));
                    }
                }
            }
        }
        let keys: std::collections::BTreeSet<String> = KEYS
            .iter()
            .map(|k| format!("{}.{}", k.section, k.key))
            .collect();
        let missing: Vec<&String> = fields.difference(&keys).collect();
        assert!(missing.is_empty(), "fields without a key: {missing:?}");
        for k in KEYS {
            // An optional setting unset by default does not serialize.
            let shown = match defaults[k.section].get(k.key) {
                None => String::new(),
                Some(toml::Value::String(s)) => s.clone(),
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                Some(other) => other.to_string(),
            };
            // `<data>/cache`: derived from another setting when unset.
            if k.default.starts_with('<') {
                assert_eq!(shown, "", "[{}] {}: derived, so unset", k.section, k.key);
                continue;
            }
            assert_eq!(
                shown, k.default,
                "[{}] {}: the key table says {:?}, Default says {:?}",
                k.section, k.key, k.default, shown
            );
        }
    }
}
