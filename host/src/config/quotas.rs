//! `[sandbox.quotas]`: what a plugin may make the host hold. Settings
//! only; enforced by [`crate::plugin::quota`]. File only (no environment
//! variables): a sub-section, like `[sandbox.plugins.NAME]`.

use serde::{Deserialize, Serialize};

/// `[sandbox.quotas]`: the caps, with defaults roomy enough for every
/// shipped plugin under the benchmark's load.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Longest state key a plugin may use, in bytes (before the host
    /// scopes it to the rule).
    pub state_key_bytes: usize,
    /// Largest state value or list item, in KiB.
    pub state_value_kb: usize,
    /// Most items a state list may hold: a larger `max-len` is lowered to it.
    pub state_list_len: u32,
    /// State writes (set, set-if-absent, window-add, list-push) in one call.
    pub state_writes_per_call: u32,
    /// Bytes of keys and values written in one call, in MiB.
    pub state_mb_per_call: usize,
    /// Live state keys one rule may hold on this machine.
    pub state_keys_per_rule: usize,
    /// Bytes of state one rule may hold on this machine, in MiB.
    pub state_mb_per_rule: usize,
    /// Alerts one `aggregate` call may return.
    pub alerts_per_call: usize,
    /// Size of one alert (key, title, summary, samples, labels), in KiB.
    pub alert_kb: usize,
    /// Deliveries (WebSocket frames, emails, HTTP requests) one `deliver`
    /// call may queue.
    pub deliveries_per_call: usize,
    /// Log lines a plugin instance may write per second (also its burst);
    /// lines over it are dropped and counted.
    pub log_lines_per_second: u32,
    /// Longest log line kept, in bytes; longer lines are cut.
    pub log_line_bytes: usize,
    /// Longest error message a plugin may return, in bytes; longer ones
    /// are cut.
    pub error_bytes: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            state_key_bytes: 1024,
            state_value_kb: 64,
            state_list_len: 1000,
            state_writes_per_call: 20_000,
            state_mb_per_call: 4,
            state_keys_per_rule: 1_000_000,
            state_mb_per_rule: 64,
            alerts_per_call: 2048,
            alert_kb: 64,
            deliveries_per_call: 16,
            log_lines_per_second: 100,
            log_line_bytes: 4096,
            error_bytes: 2048,
        }
    }
}
