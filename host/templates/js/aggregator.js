// `{{name}}`: an aggregator. It alerts once `threshold` events with the
// same error code and service arrive within `window`, counted in the host's
// state (so the count survives restarts and is shared by instances), and
// logs each alert.
//
//     [aggregate]
//     plugin = "{{name}}"
//     config = { threshold = 3, window = "1m" }
//
// Built by `tocsin plugin build` with jco (ComponentizeJS) against `wit/`.
// Imports name the interface with its version; u64/s64 values are BigInts.
import { windowAdd } from 'tocsin:plugin/state@0.1.0';
import { log } from 'tocsin:plugin/log@0.1.0';

// Per-binding settings (one entry per rule using this plugin). The host
// calls `configure` again after a restart or a fresh instance, so nothing
// here must be kept that cannot be lost: counts live in `state`.
const settings = new Map();

const UNITS_MS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 };

/** `"90s"`, `"5m"`, `"1h"` (or a number of ms) in milliseconds. */
export function durationMs(key, value) {
  if (Number.isInteger(value) && value > 0) return value;
  const m = typeof value === 'string' && /^([1-9][0-9]*)(ms|s|m|h|d)$/.exec(value);
  if (m) return Number(m[1]) * UNITS_MS[m[2]];
  throw `\`${key}\`: expected a duration like "30s", "5m" or "1h", got ${JSON.stringify(value)}`;
}

/** The settings of one binding, from its configuration (JSON text). */
export function parseSettings(configJson) {
  const config = JSON.parse(configJson);
  const unknown = Object.keys(config).filter((k) => !['threshold', 'window'].includes(k)).sort();
  if (unknown.length) throw `unknown key \`${unknown[0]}\` (this plugin reads \`threshold\` and \`window\`)`;
  const threshold = config.threshold ?? 3;
  if (!Number.isInteger(threshold) || threshold < 1) {
    throw `\`threshold\`: must be an integer of at least 1, got ${JSON.stringify(threshold)}`;
  }
  return { threshold, windowMs: durationMs('window', config.window ?? '1m') };
}

export function configure(binding, config) {
  settings.set(binding, parseSettings(config));
}

export function aggregate(binding, events) {
  const { threshold, windowMs } = settings.get(binding);
  const alerts = [];
  for (const e of events) {
    const key = `${e.errorCode}|${e.serviceName}`;
    const hit = windowAdd(key, 1, e.receivedAt, BigInt(windowMs), BigInt(threshold));
    if (hit.fires > 0) {
      log('info', `${key} reached ${threshold}`);
      alerts.push({
        key,
        rule: '', // filled in by the host
        count: BigInt(threshold),
        firstSeen: hit.windowStart,
        lastSeen: e.receivedAt,
        severity: e.severity,
        title: `${e.errorCode} on ${e.serviceName}`,
        summary: `${threshold} events within ${Math.floor(windowMs / 1000)} s: ${e.message}`,
        samples: [e.message],
        labels: [['error-code', e.errorCode], ['service', e.serviceName]],
      });
    }
  }
  return alerts;
}
