// A JavaScript aggregator for the plugin-kit tests, built with jco's default
// options: alerts once `threshold` events with the same error code and
// service arrive within `window_ms`, on the host's windowed counter.
import { windowAdd } from 'tocsin:plugin/state@0.1.0';
const settings = new Map();
export function configure(binding, config) {
  const c = JSON.parse(config);
  const t = c.threshold ?? 3;
  if (!Number.isInteger(t) || t <= 0) throw '`threshold` must be a positive integer';
  settings.set(binding, { t: BigInt(t), w: BigInt(c.window_ms ?? 60000) });
}
export function aggregate(binding, events) {
  const s = settings.get(binding);
  const alerts = [];
  for (const e of events) {
    const key = `${e.errorCode}|${e.serviceName}`;
    const hit = windowAdd(key, 1, e.receivedAt, s.w, s.t);
    if (hit.fires > 0) {
      alerts.push({ key, rule: '', count: s.t, firstSeen: hit.windowStart, lastSeen: e.receivedAt,
        severity: e.severity, title: `${e.errorCode} on ${e.serviceName}`, summary: e.message,
        samples: [e.message], labels: [['error-code', e.errorCode], ['service', e.serviceName]] });
    }
  }
  return alerts;
}
