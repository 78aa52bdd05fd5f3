//! Time intervals: named recurring spans of time — business hours, a
//! maintenance window every Sunday 02:00–04:00 — that a rule or one of its
//! channels uses as `mute-times` (not notified while one covers now) or
//! `active-times` (notified only while one does). Alertmanager's
//! `time_intervals`, written in a policy file of the rules directory
//! ([`crate::inhibit`] has the other kind of table such a file holds):
//!
//! ```toml
//! [[time-intervals.business-hours]]
//! weekdays = ["monday:friday"]
//! times = ["09:00-17:00"]
//! location = "Europe/Berlin"          # IANA name; default UTC
//!
//! [[time-intervals.maintenance]]
//! weekdays = ["sunday"]
//! times = ["02:00-04:00"]
//! ```
//!
//! A name holds one or more ranges and covers a moment when any range
//! does; a range covers it when every field it sets does (`weekdays`,
//! `times` — start included, end excluded, `24:00` the end of the day —,
//! `days-of-month` with negative days counted from the month's end,
//! `months` by name or number, `years`). Ranges like `monday:friday` or
//! `1:7` include both ends.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

/// One range of a named interval, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RangeSpec {
    #[serde(default)]
    weekdays: Vec<String>,
    #[serde(default)]
    times: Vec<String>,
    #[serde(default)]
    days_of_month: Vec<String>,
    #[serde(default)]
    months: Vec<String>,
    #[serde(default)]
    years: Vec<String>,
    location: Option<String>,
}

/// An inclusive range of numbers.
type Span = (i32, i32);

/// One range, validated.
#[derive(Clone, Debug)]
struct Range {
    /// Days of the week, Monday = 1 … Sunday = 7.
    weekdays: Vec<Span>,
    /// Minutes of the day: start included, end excluded.
    times: Vec<(i32, i32)>,
    days_of_month: Vec<Span>,
    months: Vec<Span>,
    years: Vec<Span>,
    zone: TimeZone,
}

/// A named interval: covered when any of its ranges is.
#[derive(Clone, Debug)]
pub struct TimeInterval {
    ranges: Vec<Range>,
}

/// Every named interval of a generation.
pub type Intervals = BTreeMap<String, TimeInterval>;

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// `a:b` or `a` as an inclusive span; `value` reads one end.
fn span(text: &str, value: impl Fn(&str) -> Result<i32, String>) -> Result<Span, String> {
    let (a, b) = text.split_once(':').unwrap_or((text, text));
    let (a, b) = (value(a.trim())?, value(b.trim())?);
    Ok((a, b))
}

fn named<'a>(names: &'a [&'a str], what: &str) -> impl Fn(&str) -> Result<i32, String> + 'a {
    let what = what.to_string();
    move |s: &str| {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as i32 + 1);
        }
        match s.parse::<i32>() {
            Ok(n) if (1..=names.len() as i32).contains(&n) => Ok(n),
            _ => Err(format!("{s:?} is not a {what}")),
        }
    }
}

fn number(lo: i32, hi: i32, what: &'static str) -> impl Fn(&str) -> Result<i32, String> {
    move |s: &str| match s.parse::<i32>() {
        Ok(n) if (lo..=hi).contains(&n) && n != 0 => Ok(n),
        _ => Err(format!("{s:?} is not a {what} ({lo}…{hi})")),
    }
}

/// `HH:MM` as minutes of the day (`24:00` allowed as an end).
fn minutes(s: &str) -> Result<i32, String> {
    let bad = || format!("{s:?} is not a time of day (HH:MM)");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..=24).contains(&h) || !(0..60).contains(&m) || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Range {
    fn parse(spec: RangeSpec) -> Result<Self, String> {
        let all = |texts: &[String], f: &dyn Fn(&str) -> Result<Span, String>| {
            texts.iter().map(|t| f(t)).collect::<Result<Vec<_>, _>>()
        };
        let weekdays = all(&spec.weekdays, &|t| span(t, named(&WEEKDAYS, "weekday")))
            .map_err(|e| format!("weekdays: {e}"))?;
        let months = all(&spec.months, &|t| span(t, named(&MONTHS, "month")))
            .map_err(|e| format!("months: {e}"))?;
        let days_of_month = all(&spec.days_of_month, &|t| {
            span(t, number(-31, 31, "day of the month"))
        })
        .map_err(|e| format!("days-of-month: {e}"))?;
        let years = all(&spec.years, &|t| span(t, number(1970, 9999, "year")))
            .map_err(|e| format!("years: {e}"))?;
        let mut times = Vec::new();
        for t in &spec.times {
            let (a, b) = t
                .split_once('-')
                .ok_or_else(|| format!("times: {t:?} is not a range (HH:MM-HH:MM)"))?;
            let (a, b) = (
                minutes(a).map_err(|e| format!("times: {e}"))?,
                minutes(b).map_err(|e| format!("times: {e}"))?,
            );
            if a >= b {
                return Err(format!(
                    "times: {t:?} ends before it starts (a range within one day)"
                ));
            }
            times.push((a, b));
        }
        let zone = match &spec.location {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name)
                .map_err(|e| format!("location: {name:?} is not a known time zone: {e}"))?,
        };
        Ok(Self {
            weekdays,
            times,
            days_of_month,
            months,
            years,
            zone,
        })
    }

    fn covers(&self, at: Timestamp) -> bool {
        let dt = self.zone.to_datetime(at);
        let within = |spans: &[Span], v: i32| {
            spans.is_empty() || spans.iter().any(|(a, b)| (*a..=*b).contains(&v))
        };
        let weekday = dt.weekday().to_monday_one_offset() as i32;
        let minute = dt.hour() as i32 * 60 + dt.minute() as i32;
        let day = dt.day() as i32;
        let days_in_month = dt.date().days_in_month() as i32;
        let dom = |v: i32| if v < 0 { days_in_month + 1 + v } else { v };
        within(&self.weekdays, weekday)
            && (self.times.is_empty() || self.times.iter().any(|(a, b)| (*a..*b).contains(&minute)))
            && (self.days_of_month.is_empty()
                || self
                    .days_of_month
                    .iter()
                    .any(|(a, b)| (dom(*a)..=dom(*b)).contains(&day)))
            && within(&self.months, dt.month() as i32)
            && within(&self.years, dt.year() as i32)
    }
}

impl TimeInterval {
    /// Whether the interval covers the moment `at_ms` (ms since the epoch).
    pub fn covers(&self, at_ms: i64) -> bool {
        let Ok(at) = Timestamp::from_millisecond(at_ms) else {
            return false;
        };
        self.ranges.iter().any(|r| r.covers(at))
    }
}

/// The named intervals of a policy file's `time-intervals` table; the
/// error names the interval and the field.
pub fn parse(value: toml::Value) -> Result<Intervals, String> {
    let table: BTreeMap<String, Vec<RangeSpec>> = value
        .try_into()
        .map_err(|e| format!("time-intervals: {e}(write [[time-intervals.NAME]] tables)"))?;
    let mut out = Intervals::new();
    for (name, specs) in table {
        let ranges = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                Range::parse(s).map_err(|e| format!("time interval `{name}` #{}: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(name, TimeInterval { ranges });
    }
    Ok(out)
}

/// When a rule or a channel notifies: never while one of `mute` covers
/// now, and (when `active` names any) only while one of `active` does.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Schedule {
    #[serde(default)]
    pub mute_times: Vec<String>,
    #[serde(default)]
    pub active_times: Vec<String>,
}

impl Schedule {
    /// Every interval name it uses.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.mute_times.iter().chain(&self.active_times)
    }

    /// Why it does not notify at `now_ms`: the muting interval's name, or
    /// `not in active-times`; `None` when it notifies. A name missing from
    /// `intervals` (its file was removed) covers nothing.
    pub fn muted_by(&self, intervals: &Intervals, now_ms: i64) -> Option<String> {
        let covers = |n: &String| intervals.get(n).is_some_and(|i| i.covers(now_ms));
        if let Some(n) = self.mute_times.iter().find(|n| covers(n)) {
            return Some(format!("mute time `{n}`"));
        }
        if !self.active_times.is_empty() && !self.active_times.iter().any(covers) {
            return Some(format!("outside active times {:?}", self.active_times));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Intervals, String> {
        let t: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        parse(t["time-intervals"].clone())
    }

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("timestamp")
            .as_millisecond()
    }

    #[test]
    fn business_hours_in_a_time_zone() {
        let i = parsed(
            r#"
[[time-intervals.business]]
weekdays = ["monday:friday"]
times = ["09:00-17:00"]
location = "Europe/Berlin"
"#,
        )
        .expect("valid");
        let b = &i["business"];
        // Monday 2026-12-07: 08:30 UTC is 09:30 in Berlin.
        assert!(b.covers(at("2026-12-07T08:30:00Z")));
        assert!(
            !b.covers(at("2026-12-07T16:00:00Z")),
            "17:00 Berlin: the end is excluded"
        );
        assert!(!b.covers(at("2026-12-06T10:00:00Z")), "a Sunday");
    }

    #[test]
    fn days_of_month_months_and_years() {
        let i = parsed(
            r#"
[[time-intervals.last-day]]
days-of-month = ["-1"]
months = ["december"]
years = ["2026"]
[[time-intervals.two]]
times = ["02:00-04:00"]
[[time-intervals.two]]
weekdays = ["saturday"]
"#,
        )
        .expect("valid");
        assert!(i["last-day"].covers(at("2026-12-31T12:00:00Z")));
        assert!(!i["last-day"].covers(at("2026-12-30T12:00:00Z")));
        assert!(!i["last-day"].covers(at("2027-12-31T12:00:00Z")));
        assert!(i["two"].covers(at("2026-12-07T03:00:00Z")));
        assert!(i["two"].covers(at("2026-12-05T13:00:00Z")), "any range");
        assert!(!i["two"].covers(at("2026-12-07T13:00:00Z")));
    }

    #[test]
    fn schedules_and_errors() {
        let i = parsed("[[time-intervals.always]]\n[[time-intervals.never]]\nyears = [\"99\"]\n")
            .unwrap_err();
        assert!(i.contains("99") && i.contains("never"), "{i}");
        let i = parsed("[[time-intervals.always]]\n[[time-intervals.never]]\nyears = [\"2001\"]\n")
            .expect("valid");
        let now = at("2026-12-07T03:00:00Z");
        let s = |mute: &[&str], active: &[&str]| Schedule {
            mute_times: mute.iter().map(|s| s.to_string()).collect(),
            active_times: active.iter().map(|s| s.to_string()).collect(),
        };
        assert!(s(&["always"], &[]).muted_by(&i, now).is_some());
        assert!(s(&["never"], &[]).muted_by(&i, now).is_none());
        assert!(s(&[], &["never"]).muted_by(&i, now).is_some());
        assert!(s(&[], &["always"]).muted_by(&i, now).is_none());
        for bad in [
            "times = [\"17:00-09:00\"]",
            "weekdays = [\"funday\"]",
            "location = \"Mars/Olympus\"",
            "times = [\"25:00-26:00\"]",
        ] {
            let e = parsed(&format!("[[time-intervals.x]]\n{bad}\n")).unwrap_err();
            assert!(e.contains("`x` #1"), "{bad}: {e}");
        }
    }
}
