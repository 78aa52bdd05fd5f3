//! A silence as the Alertmanager API v2 has it: matchers on alert labels,
//! a start and an end, who made it and why. Times are epoch milliseconds
//! inside, RFC 3339 on the wire.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::event::{format_rfc3339_ms, parse_rfc3339_ms};

/// One matcher: `name` `=`, `!=`, `=~` or `!~` `value`. Regexes are
/// anchored at both ends, as in Alertmanager.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
    /// The compiled regex of a regex matcher (not stored).
    #[serde(skip)]
    pub compiled: Option<Regex>,
}

fn yes() -> bool {
    true
}

/// Two matchers are the same when they say the same (the compiled regex
/// follows from the value).
impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.value, self.is_regex, self.is_equal)
            == (&other.name, &other.value, other.is_regex, other.is_equal)
    }
}

impl Matcher {
    /// Compiles a regex matcher; says what is wrong with it.
    pub fn compile(&mut self) -> Result<(), String> {
        if self.is_regex {
            let anchored = format!("^(?:{})$", self.value);
            let re = Regex::new(&anchored)
                .map_err(|e| format!("matcher {}: invalid regex: {e}", self.name))?;
            self.compiled = Some(re);
        }
        Ok(())
    }

    /// Whether the label value `value` (the empty string for a label the
    /// alert does not have, as in Alertmanager) matches.
    pub fn matches(&self, value: &str) -> bool {
        let hit = match &self.compiled {
            Some(re) => re.is_match(value),
            None => self.value == value,
        };
        hit == self.is_equal
    }

    /// `name=value`, `name!~value`…: how amtool and the CLI print it.
    pub fn display(&self) -> String {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        format!("{}{op}{:?}", self.name, self.value)
    }
}

/// One matcher in Alertmanager's text form: `name=value`, `name!="v"`,
/// `name=~"re.*"`, `name!~re`; the value optionally double-quoted. One
/// parser for the API's filters, the CLI and the inhibition rules.
pub fn parse_matcher(text: &str) -> Result<Matcher, String> {
    let text = text.trim().trim_start_matches('{').trim_end_matches('}');
    let at = text.find(['=', '!']).ok_or_else(|| {
        format!("{text:?} is not a matcher (name=value, name!=value, name=~regex, name!~regex)")
    })?;
    let (name, rest) = text.split_at(at);
    let (is_equal, is_regex, value) = if let Some(v) = rest.strip_prefix("=~") {
        (true, true, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (false, true, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (false, false, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (true, false, v)
    } else {
        return Err(format!(
            "{text:?}: expected =, !=, =~ or !~ after the label name"
        ));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{text:?}: the label name is empty"));
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let mut m = Matcher {
        name: name.to_string(),
        value: value.to_string(),
        is_regex,
        is_equal,
        compiled: None,
    };
    m.compile()?;
    Ok(m)
}

/// Where a silence is in its life, at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    /// The API's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// One silence, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub updated_at: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    /// Its state at `now`.
    pub fn state(&self, now: i64) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Whether it mutes an alert with `labels` (name → value): every
    /// matcher matches.
    pub fn mutes<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels(&m.name).unwrap_or("")))
    }

    /// Compiles the regex matchers after loading from storage.
    pub fn compile(&mut self) -> Result<(), String> {
        self.matchers.iter_mut().try_for_each(Matcher::compile)
    }

    /// The API's `gettableSilence`.
    pub fn to_api(&self, now: i64) -> Value {
        json!({
            "id": self.id,
            "status": { "state": self.state(now).as_str() },
            "updatedAt": format_rfc3339_ms(self.updated_at),
            "matchers": self.matchers,
            "startsAt": format_rfc3339_ms(self.starts_at),
            "endsAt": format_rfc3339_ms(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
        })
    }
}

/// The API's `postableSilence`: an id to update, or none for a new one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableSilence {
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<Matcher>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl PostableSilence {
    /// The silence it describes (without an id yet), validated as
    /// Alertmanager does: at least one matcher, every regex valid, not all
    /// matchers matching the empty string (a silence of everything), an
    /// end after the start and in the future.
    pub fn validate(self, now: i64) -> Result<(Option<String>, Silence), String> {
        if self.matchers.is_empty() {
            return Err("at least one matcher is required".into());
        }
        let mut matchers = self.matchers;
        for m in &mut matchers {
            if m.name.trim().is_empty() {
                return Err("a matcher has an empty label name".into());
            }
            m.compile()?;
        }
        if matchers.iter().all(|m| m.matches("")) {
            return Err("at least one matcher must not match the empty string (this silence would mute every alert)".into());
        }
        let starts_at = parse_rfc3339_ms(&self.starts_at).map_err(|e| format!("startsAt: {e}"))?;
        let ends_at = parse_rfc3339_ms(&self.ends_at).map_err(|e| format!("endsAt: {e}"))?;
        if ends_at <= starts_at {
            return Err("endsAt must be after startsAt".into());
        }
        if ends_at <= now {
            return Err("endsAt is in the past".into());
        }
        let silence = Silence {
            id: String::new(),
            matchers,
            starts_at,
            ends_at,
            updated_at: now,
            created_by: self.created_by,
            comment: self.comment,
        };
        Ok((self.id.filter(|id| !id.is_empty()), silence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Matcher {
        let mut m = Matcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
            compiled: None,
        };
        m.compile().expect("valid");
        m
    }

    #[test]
    fn the_four_operators_and_missing_labels() {
        assert!(matcher("service", "db", false, true).matches("db"));
        assert!(!matcher("service", "db", false, true).matches("dbx"));
        assert!(matcher("service", "db", false, false).matches("web"));
        // Anchored, as in Alertmanager.
        assert!(matcher("service", "d.", true, true).matches("db"));
        assert!(!matcher("service", "d.", true, true).matches("xdb"));
        assert!(matcher("service", "d.*", true, false).matches("web"));
        // A missing label is the empty string.
        assert!(matcher("team", "", false, true).matches(""));
    }

    #[test]
    fn validation_refuses_what_alertmanager_refuses() {
        let post = |matchers: Vec<Matcher>, start: &str, end: &str| PostableSilence {
            id: None,
            matchers,
            starts_at: start.into(),
            ends_at: end.into(),
            created_by: "ops".into(),
            comment: "c".into(),
        };
        let now = parse_rfc3339_ms("2026-12-01T10:00:00Z").expect("time");
        let ok = post(
            vec![matcher("service", "db", false, true)],
            "2026-12-01T10:00:00Z",
            "2026-12-01T12:00:00Z",
        );
        assert!(ok.validate(now).is_ok());
        let all = post(
            vec![matcher("service", ".*", true, true)],
            "2026-12-01T10:00:00Z",
            "2026-12-01T12:00:00Z",
        );
        assert!(all.validate(now).unwrap_err().contains("empty string"));
        let backwards = post(
            vec![matcher("service", "db", false, true)],
            "2026-12-01T12:00:00Z",
            "2026-12-01T10:00:00Z",
        );
        assert!(backwards.validate(now).unwrap_err().contains("after"));
        let mut bad = matcher("service", "db", false, true);
        bad.is_regex = true;
        bad.value = "(".into();
        let bad = post(vec![bad], "2026-12-01T10:00:00Z", "2026-12-01T12:00:00Z");
        assert!(bad.validate(now).unwrap_err().contains("invalid regex"));
    }

    #[test]
    fn matchers_in_alertmanager_text_form() {
        let m = parse_matcher("service=device-service").expect("ok");
        assert!(m.is_equal && !m.is_regex && m.value == "device-service");
        let m = parse_matcher(r#"alertname!~"DB_.*""#).expect("ok");
        assert!(!m.is_equal && m.is_regex && m.value == "DB_.*");
        let m = parse_matcher("{severity!=low}").expect("ok");
        assert!(!m.is_equal && !m.is_regex && m.name == "severity");
        assert!(parse_matcher("nothing").is_err());
        assert!(parse_matcher("=x").is_err());
    }
}
