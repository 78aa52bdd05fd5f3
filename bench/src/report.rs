//! `BENCHMARKS.md`: the figures as Markdown tables, each with its runs'
//! min / median / max and, per run, who used the CPU.

use std::fmt::Write as _;

use crate::cpu::Usage;
use crate::stats::Spread;

/// CPU of one run, in cores: the server, the generator side (load
/// generator plus webhook receiver), named extras (the broker) and the
/// rest of the machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cpu {
    pub server: f64,
    pub gen: f64,
    pub broker: Option<f64>,
    pub other: f64,
}

impl Cpu {
    /// From a generator's [`Usage`]: group `server` is the server, the
    /// generator's own CPU plus group `receiver` is the generator side,
    /// group `broker` is RabbitMQ.
    pub fn from_usage(u: &Usage) -> Self {
        Self {
            server: u.group("server"),
            gen: u.own + u.group("receiver"),
            broker: u.groups.get("broker").copied(),
            other: u.other,
        }
    }

    /// `1.52 / 0.31 / 0.04` (server / generator / other), with the broker
    /// before other when accounted.
    pub fn cell(&self) -> String {
        match self.broker {
            Some(b) => format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                self.server, self.gen, b, self.other
            ),
            None => format!("{:.2} / {:.2} / {:.2}", self.server, self.gen, self.other),
        }
    }
}

/// One run's value.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub value: f64,
    pub cpu: Option<Cpu>,
    /// Shown after the run (e.g. "3 frames missing").
    pub note: Option<String>,
}

/// How values are printed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// Events (alerts, messages) per second.
    PerSec,
    /// Microseconds, printed as µs or ms.
    Micros,
    /// Milliseconds.
    Millis,
    /// Bytes, printed as MiB.
    Bytes,
    /// A plain count.
    Count,
    /// A ratio, printed as `×`.
    Ratio,
    /// A plain number with two decimals (a cost per event).
    Decimal,
}

/// `value` in `unit`, short.
pub fn fmt(value: f64, unit: Unit) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    match unit {
        Unit::PerSec => {
            if value >= 1e6 {
                format!("{:.2} M/s", value / 1e6)
            } else if value >= 1e4 {
                format!("{:.1}k/s", value / 1e3)
            } else if value >= 1e3 {
                format!("{:.2}k/s", value / 1e3)
            } else {
                format!("{value:.0}/s")
            }
        }
        Unit::Micros => {
            if value >= 1000.0 {
                format!("{:.2} ms", value / 1000.0)
            } else {
                format!("{value:.0} µs")
            }
        }
        Unit::Millis => format!("{value:.1} ms"),
        Unit::Bytes => format!("{:.1} MiB", value / (1024.0 * 1024.0)),
        Unit::Count => format!("{value:.0}"),
        Unit::Ratio => format!("{value:.2}×"),
        Unit::Decimal => format!("{value:.2}"),
    }
}

/// A table row: one workload, its runs.
#[derive(Clone, Debug)]
pub struct Row {
    pub label: String,
    pub unit: Unit,
    pub runs: Vec<Run>,
}

impl Row {
    pub fn new(label: impl Into<String>, unit: Unit) -> Self {
        Self {
            label: label.into(),
            unit,
            runs: Vec::new(),
        }
    }

    pub fn spread(&self) -> Option<Spread> {
        Spread::of(&self.runs.iter().map(|r| r.value).collect::<Vec<_>>())
    }

    pub fn median(&self) -> Option<f64> {
        self.spread().map(|s| s.median)
    }
}

/// A Markdown table of rows: median, min, max, then every run with its
/// CPU split. `cpu_header` names the CPU columns (e.g. "tocsin / gen /
/// other").
pub fn table(first: &str, rows: &[Row], cpu_header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {first} | median | min | max | each run: value (CPU cores {cpu_header}) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    for row in rows {
        let (med, min, max) = match row.spread() {
            Some(s) => (
                fmt(s.median, row.unit),
                fmt(s.min, row.unit),
                fmt(s.max, row.unit),
            ),
            None => ("not measured".into(), "".into(), "".into()),
        };
        let runs: Vec<String> = row
            .runs
            .iter()
            .map(|r| {
                let mut s = fmt(r.value, row.unit);
                if let Some(c) = &r.cpu {
                    let _ = write!(s, " ({})", c.cell());
                }
                if let Some(n) = &r.note {
                    let _ = write!(s, " [{n}]");
                }
                s
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {med} | {min} | {max} | {} |",
            row.label,
            runs.join("; ")
        );
    }
    out
}

/// Where a target stands.
#[derive(Clone, Debug)]
pub struct Target {
    pub what: String,
    pub goal: String,
    pub measured: String,
    /// `None`: not measured (the reason is in `measured`).
    pub met: Option<bool>,
}

impl Target {
    pub fn new(
        what: impl Into<String>,
        goal: impl Into<String>,
        measured: impl Into<String>,
        met: Option<bool>,
    ) -> Self {
        Self {
            what: what.into(),
            goal: goal.into(),
            measured: measured.into(),
            met,
        }
    }
}

/// One figure of the report.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub title: String,
    pub body: String,
    pub targets: Vec<Target>,
}

impl Section {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// A figure that could not be measured, saying why.
    pub fn failed(title: impl Into<String>, error: &anyhow::Error) -> Self {
        let mut s = Self::new(title);
        let _ = writeln!(s.body, "**Not measured:** {error:#}\n");
        s
    }

    /// Appends a paragraph.
    pub fn para(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.body, "{}\n", text.as_ref().trim_end());
    }
}

/// The targets summary table.
pub fn targets_table(sections: &[Section]) -> String {
    let mut out =
        String::from("| target | goal | measured (median) | status |\n|---|---|---|---|\n");
    for t in sections.iter().flat_map(|s| s.targets.iter()) {
        let status = match t.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {status} |",
            t.what, t.goal, t.measured
        );
    }
    out
}

/// A number at a dotted `path` of a generator's JSON result (NaN when
/// absent, so a missing figure shows as `n/a`, never as a fake 0).
pub fn num(v: &serde_json::Value, path: &str) -> f64 {
    let mut cur = v;
    for part in path.split('.') {
        cur = &cur[part];
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

/// The CPU split at `path` (a serialized [`Usage`]) of a generator's result.
pub fn cpu_at(v: &serde_json::Value, path: &str) -> Option<Cpu> {
    let mut cur = v;
    for part in path.split('.') {
        cur = &cur[part];
    }
    serde_json::from_value::<Usage>(cur.clone())
        .ok()
        .map(|u| Cpu::from_usage(&u))
}

/// A rule file for the benchmarks: events with `code` through the
/// threshold plugin (`threshold` within `window`, keyed by `key`), to the
/// given `[[channels]]` TOML.
pub fn rule(code: Option<&str>, threshold: u64, window: &str, key: &str, channels: &str) -> String {
    let matcher = match code {
        Some(c) => format!("codes = [\"{c}\"]"),
        // No clause: every event matches.
        None => String::new(),
    };
    format!(
        "description = \"benchmark rule\"\n\n[match]\n{matcher}\n\n[aggregate]\nplugin = \"threshold\"\nconfig = {{ threshold = {threshold}, window = \"{window}\", key = [{key}] }}\n\n{channels}"
    )
}

/// `[[channels]]` for the live WebSocket stream.
pub const WS_CHANNEL: &str =
    "[[channels]]\nplugin = \"websocket\"\ngrants = { websocket = true }\n";

/// `[[channels]]` for a webhook to `url` on 127.0.0.1.
pub fn webhook_channel(url: &str) -> String {
    format!(
        "[[channels]]\nplugin = \"webhook\"\nconfig = {{ url = \"{url}\" }}\ngrants = {{ http = [\"127.0.0.1\"] }}\n"
    )
}

/// Progress on stderr.
pub fn progress(fig: &str, text: impl AsRef<str>) {
    eprintln!("[{fig}] {}", text.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(fmt(52_345.0, Unit::PerSec), "52.3k/s");
        assert_eq!(fmt(1_520_000.0, Unit::PerSec), "1.52 M/s");
        assert_eq!(fmt(250.0, Unit::Micros), "250 µs");
        assert_eq!(fmt(2500.0, Unit::Micros), "2.50 ms");
        assert_eq!(fmt(3.0 * 1024.0 * 1024.0, Unit::Bytes), "3.0 MiB");
    }

    #[test]
    fn table_has_every_run() {
        let mut r = Row::new("batch 1", Unit::PerSec);
        for v in [1000.0, 3000.0, 2000.0] {
            r.runs.push(Run {
                value: v,
                cpu: Some(Cpu {
                    server: 1.0,
                    gen: 0.5,
                    broker: None,
                    other: 0.1,
                }),
                note: None,
            });
        }
        let t = table("batch", &[r], "tocsin / gen / other");
        assert!(
            t.contains("| batch 1 | 2.00k/s | 1.00k/s | 3.00k/s |"),
            "{t}"
        );
        assert!(t.contains("(1.00 / 0.50 / 0.10)"), "{t}");
    }
}
