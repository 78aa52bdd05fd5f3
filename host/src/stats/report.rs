//! `/v1/stats`: the buckets of a range as the dashboard draws them —
//! events and alerts per step, stacked by the top codes and services,
//! the top 10 of each, and each service's health (its recent error rate
//! against its own baseline, its last error, a sparkline).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::bucket::{Bucket, By, LastError, What, OTHER};
use super::store::Step;
use super::Stats;

/// Names a stacked series keeps; the rest are summed as [`OTHER`].
const STACKED: usize = 8;
/// Rows of each top list.
const TOP: usize = 10;
/// Services the health table lists.
const SERVICES: usize = 20;
/// Points of a service's sparkline.
const SPARK: usize = 30;

/// A range the page asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Range {
    Hour,
    Day,
    Week,
}

impl Range {
    /// `1h`, `24h` or `7d`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1h" => Some(Self::Hour),
            "24h" => Some(Self::Day),
            "7d" => Some(Self::Week),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    fn step(self) -> Step {
        match self {
            Self::Hour | Self::Day => Step::Minute,
            Self::Week => Step::Hour,
        }
    }

    fn points(self) -> i64 {
        match self {
            Self::Hour => 60,
            Self::Day => 24 * 60,
            Self::Week => 7 * 24,
        }
    }
}

/// The report of `range` ending at `now` (ms since the epoch).
pub async fn build(stats: &Stats, range: Range, now: i64) -> Result<Value, String> {
    let step = range.step();
    let last = step.start(now);
    let starts: Vec<i64> = (0..range.points())
        .rev()
        .map(|i| last - i * step.ms())
        .collect();
    let buckets = stats.buckets(step, &starts).await?;
    Ok(render(range, &starts, &buckets, now))
}

/// Every rule's events taken and alerts fired over the range, by name
/// (the Rules tab's columns; at most [`super::bucket::MAX_VALUES`] a bucket).
fn per_rule(all: &Bucket) -> Value {
    let mut rules = serde_json::Map::new();
    for what in [What::Events, What::Alerts] {
        let field = match what {
            What::Events => "events",
            What::Alerts => "alerts",
        };
        for (name, n) in all.breakdown(what, By::Rule) {
            let row = rules
                .entry(name.to_string())
                .or_insert_with(|| json!({"events": 0, "alerts": 0}));
            row[field] = n.into();
        }
    }
    Value::Object(rules)
}

/// The report of `buckets` (one per start in `starts`). Pure: tested on
/// its own.
pub fn render(range: Range, starts: &[i64], buckets: &[Bucket], now: i64) -> Value {
    let mut all = Bucket::default();
    for b in buckets {
        all.merge(b);
    }
    let top = |what: What, by: By| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = all
            .breakdown(what, by)
            .map(|(n, c)| (n.to_string(), c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    let top_list = |by: By| -> Vec<Value> {
        let alerts: BTreeMap<String, u64> = top(What::Alerts, by).into_iter().collect();
        let mut rows: Vec<(String, u64, u64)> = top(What::Events, by)
            .into_iter()
            .map(|(n, e)| {
                let a = alerts.get(&n).copied().unwrap_or(0);
                (n, e, a)
            })
            .collect();
        for (n, a) in &alerts {
            if !rows.iter().any(|r| &r.0 == n) {
                rows.push((n.clone(), 0, *a));
            }
        }
        rows.truncate(TOP);
        rows.into_iter()
            .map(|(name, events, alerts)| json!({"name": name, "events": events, "alerts": alerts}))
            .collect()
    };
    json!({
        "range": range.name(),
        "stepMs": range.step().ms(),
        "from": starts.first().copied().unwrap_or(now),
        "to": now,
        "times": starts,
        "events": buckets.iter().map(|b| b.total(What::Events)).collect::<Vec<_>>(),
        "alerts": buckets.iter().map(|b| b.total(What::Alerts)).collect::<Vec<_>>(),
        "byCode": stacked(buckets, &top(What::Events, By::Code), By::Code),
        "byService": stacked(buckets, &top(What::Events, By::Service), By::Service),
        "top": {
            "codes": top_list(By::Code),
            "services": top_list(By::Service),
            "rules": top_list(By::Rule),
        },
        "services": health(buckets, &top(What::Events, By::Service)),
        "rules": per_rule(&all),
    })
}

/// Events per step of the [`STACKED`] largest values of `by`, and of the
/// rest together.
fn stacked(buckets: &[Bucket], ranked: &[(String, u64)], by: By) -> Value {
    let names: Vec<&str> = ranked
        .iter()
        .take(STACKED)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut series: Vec<Vec<u64>> = vec![vec![0; buckets.len()]; names.len() + 1];
    for (i, b) in buckets.iter().enumerate() {
        for (name, n) in b.breakdown(What::Events, by) {
            let row = names.iter().position(|x| *x == name).unwrap_or(names.len());
            series[row][i] += n;
        }
    }
    let mut names: Vec<String> = names.into_iter().map(str::to_string).collect();
    if series.last().is_some_and(|s| s.iter().all(|n| *n == 0)) {
        series.pop();
    } else {
        names.push(OTHER.to_string());
    }
    json!({ "names": names, "events": series })
}

/// Each busy service's recent rate (the last twelfth of the range)
/// against its rate over the rest, its last error, and a sparkline.
fn health(buckets: &[Bucket], ranked: &[(String, u64)]) -> Vec<Value> {
    let n = buckets.len().max(1);
    let recent_len = (n / 12).max(1);
    let per_step = |service: &str, range: std::ops::Range<usize>| -> f64 {
        let len = range.len().max(1) as f64;
        let sum: u64 = buckets[range]
            .iter()
            .flat_map(|b| b.breakdown(What::Events, By::Service))
            .filter(|(s, _)| *s == service)
            .map(|(_, c)| c)
            .sum();
        sum as f64 / len
    };
    let mut rows: Vec<(f64, Value)> = ranked
        .iter()
        .filter(|(s, _)| s != OTHER)
        .map(|(service, events)| {
            let recent = per_step(service, n.saturating_sub(recent_len)..n);
            let before = per_step(service, 0..n.saturating_sub(recent_len));
            let trend = if recent == 0.0 {
                "quiet"
            } else if recent > 1.5 * before {
                "rising"
            } else if recent < 0.5 * before {
                "falling"
            } else {
                "steady"
            };
            let last: Option<&LastError> = buckets
                .iter()
                .rev()
                .find_map(|b| b.last.get(service.as_str()));
            let chunk = n.div_ceil(SPARK);
            let spark: Vec<u64> = buckets
                .chunks(chunk)
                .map(|c| {
                    c.iter()
                        .flat_map(|b| b.breakdown(What::Events, By::Service))
                        .filter(|(s, _)| *s == service.as_str())
                        .map(|(_, c)| c)
                        .sum()
                })
                .collect();
            let row = json!({
                "name": service, "events": events,
                "recentPerStep": recent, "baselinePerStep": before, "trend": trend,
                "lastError": last, "spark": spark,
            });
            (recent, row)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.into_iter().take(SERVICES).map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_ranks_stacks_and_rates() {
        let starts: Vec<i64> = (0..60).map(|i| i * 60_000).collect();
        let mut buckets = vec![Bucket::default(); 60];
        for (i, b) in buckets.iter_mut().enumerate() {
            b.add(What::Events, &[(By::Code, "A"), (By::Service, "steady")], 2);
            if i >= 55 {
                b.add(What::Events, &[(By::Code, "B"), (By::Service, "storm")], 50);
            }
        }
        buckets[59].add(What::Alerts, &[(By::Rule, "r"), (By::Code, "B")], 1);
        // The rule took 7 of the events: counted for it, not again in all.
        buckets[59].add_by(What::Events, &[(By::Rule, "r")], 7);
        let r = render(Range::Hour, &starts, &buckets, 3_600_000);
        assert_eq!(r["events"][0], 2);
        assert_eq!(r["events"][59], 52);
        assert_eq!(r["alerts"][59], 1);
        assert_eq!(r["top"]["codes"][0]["name"], "B");
        assert_eq!(r["top"]["codes"][0]["alerts"], 1);
        assert_eq!(r["top"]["rules"][0]["name"], "r");
        assert_eq!(r["rules"]["r"], json!({"events": 7, "alerts": 1}));
        assert_eq!(r["byCode"]["names"], json!(["B", "A"]));
        assert_eq!(r["byCode"]["events"][0][59], 50);
        assert_eq!(r["services"][0]["name"], "storm");
        assert_eq!(r["services"][0]["trend"], "rising");
        assert_eq!(r["services"][1]["trend"], "steady");
        assert_eq!(r["services"][1]["spark"].as_array().map(Vec::len), Some(30));
    }
}
