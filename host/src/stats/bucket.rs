//! One time bucket of the dashboard's counters: events and alerts in a
//! minute (or an hour), in total and by error code, service and rule,
//! and each service's last error. Kept as flat fields (`c:e:code:DB`,
//! `l:db`) so Redis holds a bucket as one hash (`HINCRBY` per counter)
//! and the embedded store as one JSON object, read back the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Distinct values one bucket keeps per dimension (codes, services,
/// rules) from one instance; the rest are counted under [`OTHER`], so a
/// producer inventing a code per event cannot grow the host's memory.
pub const MAX_VALUES: usize = 100;

/// The name values past [`MAX_VALUES`] are counted under.
pub const OTHER: &str = "(other)";

/// Longest last-error message a bucket keeps (in bytes).
pub const MAX_MESSAGE: usize = 200;

/// What is counted: events or alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum What {
    Events,
    Alerts,
}

/// What a count is broken down by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum By {
    Code,
    Service,
    Rule,
}

impl What {
    fn tag(self) -> &'static str {
        match self {
            Self::Events => "e",
            Self::Alerts => "a",
        }
    }
}

impl By {
    fn tag(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::Service => "service",
            Self::Rule => "rule",
        }
    }

    /// Parses `code`, `service` or `rule` (the API's `by=`).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Code, Self::Service, Self::Rule]
            .into_iter()
            .find(|b| b.tag() == s)
    }
}

/// A bucket as fields: the counters, and the last errors as JSON.
pub type Fields = (Vec<(String, u64)>, Vec<(String, String)>);

/// A service's most recent error in a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub at: i64,
    pub code: String,
    pub message: String,
}

/// One bucket's counters and last errors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Totals: `(what, None)`; breakdowns: `(what, Some((by, value)))`.
    pub counts: BTreeMap<(What, Option<(By, String)>), u64>,
    /// By service.
    pub last: BTreeMap<String, LastError>,
}

impl Bucket {
    /// Adds `n` to the total of `what` and to each breakdown in `by`,
    /// folding a value past [`MAX_VALUES`] into [`OTHER`].
    pub fn add(&mut self, what: What, by: &[(By, &str)], n: u64) {
        *self.counts.entry((what, None)).or_default() += n;
        self.add_by(what, by, n);
    }

    /// Adds `n` to the breakdowns in `by` only, not to the total: for a
    /// count whose total is kept elsewhere (an event two rules took is
    /// one event, yet counts for each rule).
    pub fn add_by(&mut self, what: What, by: &[(By, &str)], n: u64) {
        for (dim, value) in by {
            let name = if self.has(what, *dim, value) || self.distinct(what, *dim) < MAX_VALUES {
                (*value).to_string()
            } else {
                OTHER.to_string()
            };
            *self.counts.entry((what, Some((*dim, name)))).or_default() += n;
        }
    }

    fn has(&self, what: What, by: By, value: &str) -> bool {
        self.counts
            .contains_key(&(what, Some((by, value.to_string()))))
    }

    fn distinct(&self, what: What, by: By) -> usize {
        self.counts
            .keys()
            .filter(|(w, b)| *w == what && b.as_ref().is_some_and(|(d, _)| *d == by))
            .count()
    }

    /// Keeps `error` as `service`'s last unless a later one is there.
    pub fn note_last(&mut self, service: &str, mut error: LastError) {
        if self.last.len() >= MAX_VALUES && !self.last.contains_key(service) {
            return;
        }
        if error.message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !error.message.is_char_boundary(cut) {
                cut -= 1;
            }
            error.message.truncate(cut);
        }
        match self.last.get(service) {
            Some(old) if old.at > error.at => {}
            _ => {
                self.last.insert(service.to_string(), error);
            }
        }
    }

    /// Adds everything of `other` into this bucket.
    pub fn merge(&mut self, other: &Bucket) {
        for (k, n) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += n;
        }
        for (service, e) in &other.last {
            self.note_last(service, e.clone());
        }
    }

    /// The total of `what`.
    pub fn total(&self, what: What) -> u64 {
        self.counts.get(&(what, None)).copied().unwrap_or(0)
    }

    /// Each value of `by` with its count of `what`.
    pub fn breakdown(&self, what: What, by: By) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().filter_map(move |((w, b), n)| match b {
            Some((d, v)) if *w == what && *d == by => Some((v.as_str(), *n)),
            _ => None,
        })
    }

    /// The counters as flat fields (`c:e`, `c:e:code:DB_DOWN`) and the
    /// last errors as JSON fields (`l:db`): one Redis hash, or the
    /// embedded JSON object.
    pub fn fields(&self) -> Fields {
        let counts = self
            .counts
            .iter()
            .map(|((what, by), n)| {
                let name = match by {
                    None => format!("c:{}", what.tag()),
                    Some((dim, v)) => format!("c:{}:{}:{v}", what.tag(), dim.tag()),
                };
                (name, *n)
            })
            .collect();
        let last = self
            .last
            .iter()
            .filter_map(|(s, e)| Some((format!("l:{s}"), serde_json::to_string(e).ok()?)))
            .collect();
        (counts, last)
    }

    /// Reads fields back (unknown or malformed ones are skipped: a bucket
    /// written by a newer version still reads).
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut b = Self::default();
        for (name, value) in fields {
            if let Some(service) = name.strip_prefix("l:") {
                if let Ok(e) = serde_json::from_str::<LastError>(value) {
                    b.note_last(service, e);
                }
                continue;
            }
            let Some(rest) = name.strip_prefix("c:") else {
                continue;
            };
            let Ok(n) = value.parse::<u64>() else {
                continue;
            };
            let mut parts = rest.splitn(3, ':');
            let what = match parts.next() {
                Some("e") => What::Events,
                Some("a") => What::Alerts,
                _ => continue,
            };
            let key = match (parts.next(), parts.next()) {
                (None, _) => None,
                (Some(dim), Some(v)) => match By::parse(dim) {
                    Some(by) => Some((by, v.to_string())),
                    None => continue,
                },
                (Some(_), None) => continue,
            };
            *b.counts.entry((what, key)).or_default() += n;
        }
        b
    }

    /// The bucket as the embedded store's JSON text.
    pub fn to_json(&self) -> String {
        let (counts, last) = self.fields();
        let mut map = serde_json::Map::new();
        for (k, n) in counts {
            map.insert(k, n.into());
        }
        for (k, v) in last {
            map.insert(k, v.into());
        }
        serde_json::Value::Object(map).to_string()
    }

    /// Reads [`Self::to_json`]'s text (empty on malformed text).
    pub fn from_json(text: &str) -> Self {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text) else {
            return Self::default();
        };
        let fields: Vec<(String, String)> = map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect();
        Self::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_json() {
        let mut b = Bucket::default();
        b.add(
            What::Events,
            &[(By::Code, "DB:DOWN"), (By::Service, "db")],
            3,
        );
        b.add(What::Alerts, &[(By::Rule, "r")], 1);
        b.note_last(
            "db",
            LastError {
                at: 5,
                code: "DB:DOWN".into(),
                message: "é".repeat(150),
            },
        );
        let back = Bucket::from_json(&b.to_json());
        assert_eq!(back.total(What::Events), 3);
        assert_eq!(
            back.breakdown(What::Events, By::Code).collect::<Vec<_>>(),
            vec![("DB:DOWN", 3)]
        );
        assert_eq!(back.last["db"].message.len(), MAX_MESSAGE);
        assert_eq!(back, b);
    }

    #[test]
    fn values_past_the_cap_count_as_other() {
        let mut b = Bucket::default();
        for i in 0..MAX_VALUES + 5 {
            b.add(What::Events, &[(By::Code, &format!("C{i}"))], 1);
        }
        b.add(What::Events, &[(By::Code, "C0")], 1);
        let codes: BTreeMap<&str, u64> = b.breakdown(What::Events, By::Code).collect();
        assert_eq!(codes.len(), MAX_VALUES + 1);
        assert_eq!(codes[OTHER], 5);
        assert_eq!(codes["C0"], 2);
        assert_eq!(b.total(What::Events), MAX_VALUES as u64 + 6);
    }

    #[test]
    fn the_later_last_error_wins_whatever_the_order() {
        let e = |at| LastError {
            at,
            code: format!("C{at}"),
            message: String::new(),
        };
        let mut a = Bucket::default();
        a.note_last("s", e(9));
        a.note_last("s", e(4));
        assert_eq!(a.last["s"].at, 9);
    }
}
