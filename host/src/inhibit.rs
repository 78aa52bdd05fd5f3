//! Inhibition: while an alert matching a rule's `source` matchers is
//! active, the alerts matching its `target` matchers that have the same
//! values for every label in `equal` are muted — the database is down, so
//! the "cannot reach Redis" alerts of the same service are noise. An
//! inhibited alert is counted and recorded (history `inhibitedBy`, an
//! `inhibited` trace step, `tocsin_alerts_inhibited_total`) and listed as
//! `suppressed` with `inhibitedBy` by `GET /api/v2/alerts`; once the
//! source ends (resolved, or its rule's `resolve-after`), the target
//! notifies again.
//!
//! The rules are Alertmanager's `inhibit_rules`, written as `[[inhibit]]`
//! tables in a policy file of the rules directory ([`crate::policy`]),
//! hot-reloaded with the rules (a broken file keeps the previous version
//! serving):
//!
//! ```toml
//! [[inhibit]]
//! source = ['error-code="DATABASE_CONNECTION_FAILED"']
//! target = ['error-code=~"REDIS_.*|MINIO_.*"']
//! equal = ["service"]
//! ```
//!
//! As in Alertmanager, a missing label has the empty value (for the
//! matchers and for `equal`), and an alert matching both sides of a rule
//! is never inhibited by one that also does (nor by itself).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::silence::{parse_matcher, Matcher};

/// One `[[inhibit]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    #[serde(alias = "source_matchers")]
    source: Vec<String>,
    #[serde(alias = "target_matchers")]
    target: Vec<String>,
    #[serde(default)]
    equal: Vec<String>,
}

/// One inhibition rule, validated.
#[derive(Clone, Debug)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
    /// Where it was written (`file`, `[[inhibit]]` number), for errors and
    /// the status API.
    pub origin: String,
}

/// Labels as the matchers see them: a missing label is empty.
fn value<'a>(labels: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    labels.get(name).map(String::as_str).unwrap_or("")
}

fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(value(labels, &m.name)))
}

impl InhibitRule {
    /// Whether `source` (an active alert's labels) inhibits `target`.
    fn inhibits(
        &self,
        source: &BTreeMap<String, String>,
        target: &BTreeMap<String, String>,
    ) -> bool {
        if !all_match(&self.target, target) || !all_match(&self.source, source) {
            return false;
        }
        if !self
            .equal
            .iter()
            .all(|l| value(source, l) == value(target, l))
        {
            return false;
        }
        // Alertmanager's guard: an alert on both sides is not inhibited by
        // another on both sides (which would let two of them mute each other).
        !(all_match(&self.source, target) && all_match(&self.target, source))
    }
}

/// The rules of a policy file's `inhibit` array (`file` names it in
/// errors); the error says which table and which matcher is wrong.
pub fn parse(value: toml::Value, file: &str) -> Result<Vec<InhibitRule>, String> {
    let specs: Vec<RuleSpec> = value.try_into().map_err(|e| {
        format!("inhibit: {e}(write [[inhibit]] tables with source, target and equal)")
    })?;
    let mut out = Vec::with_capacity(specs.len());
    for (i, r) in specs.into_iter().enumerate() {
        let at = format!("[[inhibit]] #{}", i + 1);
        let matchers = |side: &str, texts: &[String]| -> Result<Vec<Matcher>, String> {
            if texts.is_empty() {
                return Err(format!(
                    "{at}: `{side}` needs at least one matcher (an empty side would match every alert)"
                ));
            }
            texts
                .iter()
                .map(|t| parse_matcher(t).map_err(|e| format!("{at}: {side}: {e}")))
                .collect()
        };
        out.push(InhibitRule {
            source: matchers("source", &r.source)?,
            target: matchers("target", &r.target)?,
            equal: r.equal,
            origin: format!("{file} {at}"),
        });
    }
    Ok(out)
}

/// An active alert that may inhibit others: its fingerprint and labels.
pub struct Source<'a> {
    pub fingerprint: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Every inhibition rule of a generation.
#[derive(Clone, Debug, Default)]
pub struct Inhibitions {
    rules: Vec<InhibitRule>,
}

impl Inhibitions {
    /// The rules, in file order.
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        Self { rules }
    }

    /// The rules, for the status API.
    pub fn rules(&self) -> &[InhibitRule] {
        &self.rules
    }

    /// Whether some rule could inhibit an alert with `labels`: the cheap
    /// check that spares the pipeline a read of the active alerts.
    pub fn may_inhibit(&self, labels: &BTreeMap<String, String>) -> bool {
        self.rules.iter().any(|r| all_match(&r.target, labels))
    }

    /// The fingerprints of the `sources` inhibiting the alert `fingerprint`
    /// with `labels` (none: it is not inhibited), each once.
    pub fn inhibited_by<'a>(
        &self,
        fingerprint: &str,
        labels: &BTreeMap<String, String>,
        sources: impl Iterator<Item = Source<'a>>,
    ) -> Vec<String> {
        if !self.may_inhibit(labels) {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for s in sources {
            if s.fingerprint == fingerprint || out.iter().any(|f| f == s.fingerprint) {
                continue;
            }
            if self.rules.iter().any(|r| r.inhibits(s.labels, labels)) {
                out.push(s.fingerprint.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const FILE: &str = r#"
[[inhibit]]
source = ['error-code="DATABASE_CONNECTION_FAILED"']
target = ['error-code=~"REDIS_.*"']
equal = ["service"]
"#;

    fn parse(text: &str, file: &str) -> Result<Vec<InhibitRule>, String> {
        let t: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        super::parse(t["inhibit"].clone(), file)
    }

    #[test]
    fn a_source_mutes_targets_with_equal_labels_only() {
        let inh = Inhibitions::new(parse(FILE, "inhibit.toml").expect("valid"));
        let db = labels(&[
            ("error-code", "DATABASE_CONNECTION_FAILED"),
            ("service", "a"),
        ]);
        let redis_a = labels(&[("error-code", "REDIS_CONNECTION_FAILED"), ("service", "a")]);
        let redis_b = labels(&[("error-code", "REDIS_CONNECTION_FAILED"), ("service", "b")]);
        let src = || {
            std::iter::once(Source {
                fingerprint: "db",
                labels: &db,
            })
        };
        assert_eq!(inh.inhibited_by("ra", &redis_a, src()), vec!["db"]);
        assert!(inh.inhibited_by("rb", &redis_b, src()).is_empty());
        assert!(inh.inhibited_by("db", &db, src()).is_empty());
        assert!(inh.may_inhibit(&redis_b) && !inh.may_inhibit(&db));
    }

    #[test]
    fn an_alert_on_both_sides_does_not_mute_its_like() {
        let both = "[[inhibit]]\nsource = ['severity=critical']\ntarget = ['severity=critical']\n";
        let inh = Inhibitions::new(parse(both, "f").expect("valid"));
        let a = labels(&[("severity", "critical"), ("service", "a")]);
        let b = labels(&[("severity", "critical"), ("service", "b")]);
        let src = std::iter::once(Source {
            fingerprint: "b",
            labels: &b,
        });
        assert!(inh.inhibited_by("a", &a, src).is_empty());
    }

    #[test]
    fn broken_files_say_where() {
        let e = parse("[[inhibit]]\nsource = ['x']\ntarget = ['y=1']\n", "f").unwrap_err();
        assert!(e.contains("#1") && e.contains("source"), "{e}");
        let e = parse("[[inhibit]]\nsource = []\ntarget = ['y=1']\n", "f").unwrap_err();
        assert!(e.contains("at least one"), "{e}");
        let e = parse(
            "[[inhibit]]\nsource = ['a=1']\ntarget = ['y=1']\nwhen = 1\n",
            "f",
        )
        .unwrap_err();
        assert!(e.contains("when"), "{e}");
    }
}
