//! CPU and memory accounting from `/proc`.
//!
//! Every measured run reports who used the CPU while it ran: the server
//! process(es), the load generator itself, named helpers (webhook receiver,
//! RabbitMQ broker) and *everything else* on the machine (machine-wide busy
//! time from `/proc/stat` minus the processes we know). A throughput figure
//! means little without it: on two shared cores the server may have been
//! starved by the generator or by a neighbour's build, and the reader must
//! be able to see that.
//!
//! Figures are in *cores*: CPU seconds divided by wall seconds, so `1.00`
//! is one core busy for the whole run.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Clock ticks per second of the `/proc` CPU counters (`USER_HZ`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU ticks of process `pid` (all its threads), from
/// `/proc/<pid>/stat`; `None` when the process is gone.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&text)
}

/// User + system CPU ticks of this process.
pub fn self_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| parse_stat_ticks(&t))
        .unwrap_or(0)
}

/// Fields 14 and 15 (utime, stime) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may contain spaces and parentheses, so fields
/// are counted after its last `)`.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is index 0, so utime (14) is 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Machine-wide (busy, total) ticks from the first line of `/proc/stat`.
/// Busy excludes idle and iowait; guest time is already inside user.
pub fn machine_ticks() -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no `cpu` line")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    let total = busy + get(3) + get(4);
    Ok((busy, total))
}

/// Resident set size of `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (did the process exit?)"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .with_context(|| format!("/proc/{pid}/status has no VmRSS"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("unreadable VmRSS line {line:?}"))?;
    Ok(kib * 1024)
}

/// Pids of processes whose command name (`/proc/<pid>/comm`) is `comm`,
/// e.g. `beam.smp` for the RabbitMQ broker.
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == comm)
                .unwrap_or(false)
        })
        .collect()
}

/// Named groups of processes to account, e.g. `server` → tocsin's pid.
#[derive(Clone, Debug, Default)]
pub struct Groups(pub Vec<(String, Vec<u32>)>);

impl Groups {
    /// Parses `name=pid[,pid...]` arguments.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut out = Vec::new();
        for a in args {
            let (name, pids) = a
                .split_once('=')
                .with_context(|| format!("--cpu {a:?}: expected name=pid[,pid]"))?;
            let pids = pids
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<u32>()
                        .with_context(|| format!("--cpu {a:?}: {p:?} is not a pid"))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push((name.to_string(), pids));
        }
        Ok(Self(out))
    }

    /// The `--cpu` arguments for these groups.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, pids) in &self.0 {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            out.push("--cpu".to_string());
            out.push(format!("{name}={}", list.join(",")));
        }
        out
    }

    /// Adds a group.
    pub fn with(mut self, name: &str, pids: Vec<u32>) -> Self {
        if !pids.is_empty() {
            self.0.push((name.to_string(), pids));
        }
        self
    }
}

/// CPU counters at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    at: Instant,
    machine_busy: u64,
    own: u64,
    groups: Vec<(String, u64)>,
}

/// Takes a snapshot of the machine, this process and `groups`.
pub fn snapshot(groups: &Groups) -> Snapshot {
    let (machine_busy, _) = machine_ticks().unwrap_or((0, 0));
    Snapshot {
        at: Instant::now(),
        machine_busy,
        own: self_ticks(),
        groups: groups
            .0
            .iter()
            .map(|(name, pids)| {
                (
                    name.clone(),
                    pids.iter().filter_map(|p| process_ticks(*p)).sum(),
                )
            })
            .collect(),
    }
}

/// CPU used between two snapshots, in cores.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// Wall seconds between the snapshots.
    pub wall_s: f64,
    /// The process that took the snapshots (the load generator).
    pub own: f64,
    /// Each named group.
    pub groups: BTreeMap<String, f64>,
    /// The rest of the machine: busy time of every other process.
    pub other: f64,
    /// The whole machine.
    pub machine: f64,
}

impl Usage {
    /// A group's cores, 0 when not accounted.
    pub fn group(&self, name: &str) -> f64 {
        self.groups.get(name).copied().unwrap_or(0.0)
    }
}

/// The CPU used from `a` to `b`.
pub fn usage(a: &Snapshot, b: &Snapshot) -> Usage {
    let hz = ticks_per_second();
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let cores = |ticks: u64| ticks as f64 / hz / wall;
    let own = b.own.saturating_sub(a.own);
    let mut known = own;
    let mut groups = BTreeMap::new();
    for ((name, after), (_, before)) in b.groups.iter().zip(a.groups.iter()) {
        let d = after.saturating_sub(*before);
        known += d;
        *groups.entry(name.clone()).or_insert(0.0) += cores(d);
    }
    let machine = b.machine_busy.saturating_sub(a.machine_busy);
    Usage {
        wall_s: wall,
        own: cores(own),
        groups,
        other: cores(machine.saturating_sub(known)),
        machine: cores(machine),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_the_name() {
        let line = "1234 (tokio (rt) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_stat_ticks(line), Some(300));
    }
}
