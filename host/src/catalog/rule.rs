//! The rule file: one TOML file per rule in the rules directory.
//!
//! ```toml
//! description = "Devices fail to start"
//! [match]
//! codes = ["DEVICE_START_FAILED"]      # globs; empty = any
//! services = ["device-*"]              # globs; empty = any
//! severities = ["high", "critical"]    # empty = any
//! sources = ["http", "amqp"]           # empty = any
//! metadata = { region = "eu-*" }       # every key must be present and match
//!
//! [aggregate]
//! plugin = "threshold"
//! config = { threshold = 3, window = "15m" }
//!
//! [route]                              # optional; default: every channel
//! plugin = "severity-router"
//!
//! [[channels]]
//! name = "websocket"                   # default: the plugin name
//! plugin = "websocket"
//! grants = { websocket = true }
//! ```
//!
//! See `rules/README.md` for the full reference.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::event::{Event, Severity};
use crate::plugin::Grants;

fn yes() -> bool {
    true
}

/// A rule file as written by a person.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Rule name; defaults to the file name without `.toml`.
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// A disabled rule is loaded and checked but matches nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(rename = "match", default)]
    pub matcher: MatchSpec,
    pub aggregate: PluginSpec,
    pub route: Option<PluginSpec>,
    #[serde(default)]
    pub channels: Vec<ChannelSpec>,
    /// How long an alert of this rule stays active after it last fired,
    /// without a resolution (`"1h"` when unset; see [`crate::active`]).
    #[serde(rename = "resolve-after")]
    pub resolve_after: Option<String>,
    /// Time intervals ([`crate::interval`]) during which none of this
    /// rule's alerts is notified (they are still counted and recorded).
    #[serde(rename = "mute-times", default)]
    pub mute_times: Vec<String>,
    /// When set, this rule's alerts are notified only during these.
    #[serde(rename = "active-times", default)]
    pub active_times: Vec<String>,
    /// Escalation steps ([`crate::pipeline::escalate`]), in order.
    #[serde(default)]
    pub escalation: Vec<EscalationSpec>,
    /// Grouping of notifications ([`crate::group`]).
    pub group: Option<GroupSpec>,
}

/// `[group]`: Alertmanager's `group_by`, `group_wait`, `group_interval`
/// and `repeat_interval`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Labels whose values make a group (none: one group for the rule).
    #[serde(default)]
    pub by: Vec<String>,
    /// First notification of a new group this long after its first alert
    /// (default 30s).
    pub wait: Option<String>,
    /// Then at most this often while it has news (default 5m).
    pub interval: Option<String>,
    /// And this often with nothing new while its alerts fire (default:
    /// never).
    pub repeat: Option<String>,
}

impl GroupSpec {
    /// The grouping it describes; errors name the key.
    pub fn grouping(&self) -> Result<crate::group::Grouping, String> {
        let ms = |key: &str, text: &Option<String>, default: u64| -> Result<u64, String> {
            match text {
                None => Ok(default),
                Some(t) => humantime::parse_duration(t)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|e| format!("group.{key}: {t:?}: {e} (use e.g. 30s, 5m)")),
            }
        };
        let interval_ms = ms("interval", &self.interval, 300_000)?;
        if interval_ms == 0 {
            return Err("group.interval: must be longer than 0".into());
        }
        let repeat_ms = match &self.repeat {
            None => None,
            Some(_) => Some(ms("repeat", &self.repeat, 0)?.max(interval_ms)),
        };
        Ok(crate::group::Grouping {
            by: self.by.clone(),
            wait_ms: ms("wait", &self.wait, 30_000)?,
            interval_ms,
            repeat_ms,
        })
    }
}

/// `[[escalation]] after = "15m", channels = ["pagerduty"]`: while an
/// alert stays active and unacknowledged this long after it first fired,
/// these of the rule's channels are called once. A channel an escalation
/// step names is called only by its steps, never by the first notification.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSpec {
    pub after: String,
    pub channels: Vec<String>,
}

/// How long an alert stays active after it last fired when its rule sets
/// no `resolve-after`.
pub const DEFAULT_RESOLVE_AFTER_MS: u64 = 3_600_000;

impl RuleSpec {
    /// `resolve-after` in ms; the error names the key.
    pub fn resolve_after_ms(&self) -> Result<u64, String> {
        match &self.resolve_after {
            None => Ok(DEFAULT_RESOLVE_AFTER_MS),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if d.as_millis() > 0 => Ok(d.as_millis() as u64),
                Ok(_) => Err("resolve-after: must be longer than 0".into()),
                Err(e) => Err(format!(
                    "resolve-after: {text:?}: {e} (use e.g. 5m, 1h, 1d)"
                )),
            },
        }
    }
}

/// Which events a rule takes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default)]
    pub codes: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub severities: Vec<Severity>,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A plugin and its configuration for this rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    pub plugin: String,
    #[serde(default)]
    pub config: toml::Table,
}

/// One delivery channel of the rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: Option<String>,
    pub plugin: String,
    #[serde(default)]
    pub config: toml::Table,
    #[serde(default)]
    pub grants: Grants,
    /// Retry policy of this channel's deliveries; unset keys take `[delivery]`'s.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Time intervals during which this channel is not called.
    #[serde(rename = "mute-times", default)]
    pub mute_times: Vec<String>,
    /// When set, this channel is called only during these.
    #[serde(rename = "active-times", default)]
    pub active_times: Vec<String>,
}

/// `retry = { attempts = 5, base = "1s", cap = "30s" }` on a channel.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub attempts: Option<u32>,
    pub base: Option<String>,
    pub cap: Option<String>,
}

impl RetrySpec {
    /// Resolves against `default`; errors name the key.
    pub fn resolve(
        &self,
        default: crate::deliver::RetryPolicy,
    ) -> Result<crate::deliver::RetryPolicy, String> {
        let ms = |key: &str, v: &Option<String>, d: u64| -> Result<u64, String> {
            match v {
                None => Ok(d),
                Some(text) => humantime::parse_duration(text)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|e| format!("retry.{key}: {text:?}: {e} (use e.g. 500ms, 1s, 30s)")),
            }
        };
        let attempts = self.attempts.unwrap_or(default.attempts);
        if attempts == 0 {
            return Err("retry.attempts: must be at least 1".into());
        }
        Ok(crate::deliver::RetryPolicy {
            attempts,
            base_ms: ms("base", &self.base, default.base_ms)?,
            cap_ms: ms("cap", &self.cap, default.cap_ms)?,
        })
    }
}

/// Compiled form of [`MatchSpec`].
#[derive(Clone, Debug)]
pub struct Matcher {
    codes: Option<GlobSet>,
    services: Option<GlobSet>,
    sources: Option<GlobSet>,
    severities: Vec<Severity>,
    metadata: Vec<(String, globset::GlobMatcher)>,
}

fn globs(field: &str, patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| format!("match.{field}: bad pattern {p:?}: {e}"))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| format!("match.{field}: {e}"))
}

impl Matcher {
    /// Compiles the globs of `spec`.
    pub fn compile(spec: &MatchSpec) -> Result<Self, String> {
        let mut metadata = Vec::new();
        for (k, p) in &spec.metadata {
            let glob =
                Glob::new(p).map_err(|e| format!("match.metadata.{k}: bad pattern {p:?}: {e}"))?;
            metadata.push((k.clone(), glob.compile_matcher()));
        }
        Ok(Self {
            codes: globs("codes", &spec.codes)?,
            services: globs("services", &spec.services)?,
            sources: globs("sources", &spec.sources)?,
            severities: spec.severities.clone(),
            metadata,
        })
    }

    /// True when `event` is one this rule takes.
    pub fn matches(&self, event: &Event) -> bool {
        self.codes
            .as_ref()
            .is_none_or(|g| g.is_match(&event.error_code))
            && self
                .services
                .as_ref()
                .is_none_or(|g| g.is_match(&event.service_name))
            && self
                .sources
                .as_ref()
                .is_none_or(|g| g.is_match(&*event.source))
            && (self.severities.is_empty() || self.severities.contains(&event.severity))
            && self
                .metadata
                .iter()
                .all(|(k, m)| event.metadata.get(k).is_some_and(|v| m.is_match(v)))
    }
}

/// Checks a rule or channel name: letters, digits, `-`, `_`, `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses a rule file's text; the error names the line and column.
pub fn parse(text: &str) -> Result<RuleSpec, String> {
    toml::from_str::<RuleSpec>(text).map_err(|e| crate::config::one_line_error(text, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event(code: &str, service: &str, severity: Severity) -> Event {
        Event {
            event_id: "e".into(),
            source: Arc::from("http"),
            error_code: code.into(),
            severity,
            message: "m".into(),
            service_name: service.into(),
            timestamp: 0,
            received_at: 0,
            user_message: None,
            user_id: None,
            stack_trace: None,
            metadata: [("region".to_string(), "eu-west".to_string())].into(),
            dedup: false,
            resolved: false,
            only_rules: None,
        }
    }

    #[test]
    fn matcher_applies_every_clause() {
        let spec = parse(
            r#"
            [match]
            codes = ["DEVICE_*"]
            services = ["device-service"]
            severities = ["high"]
            metadata = { region = "eu-*" }
            [aggregate]
            plugin = "threshold"
            "#,
        )
        .expect("parses");
        let m = Matcher::compile(&spec.matcher).expect("compiles");
        assert!(m.matches(&event(
            "DEVICE_START_FAILED",
            "device-service",
            Severity::High
        )));
        assert!(!m.matches(&event("PAYMENT_FAILED", "device-service", Severity::High)));
        assert!(!m.matches(&event("DEVICE_START_FAILED", "other", Severity::High)));
        assert!(!m.matches(&event(
            "DEVICE_START_FAILED",
            "device-service",
            Severity::Low
        )));
    }

    #[test]
    fn parse_errors_name_line_and_key() {
        let err = parse("[aggregate]\nplugin = \"t\"\nthreshold = 3\n").expect_err("unknown key");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("threshold"), "{err}");
        let err = parse("[aggregate\n").expect_err("syntax");
        assert!(err.contains("line 1"), "{err}");
    }
}
