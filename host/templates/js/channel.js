// `{{name}}`: a channel. It renders an alert as one JSON frame on the live
// WebSocket stream (`/v1/ws`), its title prefixed. Channels do no I/O
// themselves: they hand deliveries to host capabilities (`websocket`,
// `email`, `http`), each of which the rule must grant.
//
//     [[channels]]
//     plugin = "{{name}}"
//     grants = { websocket = true }
//     config = { prefix = "[{{name}}]" }
//
// Built by `tocsin plugin build` with jco (ComponentizeJS) against `wit/`.
// Imports name the interface with its version; u64/s64 values are BigInts.
import { broadcast } from 'tocsin:plugin/websocket@0.1.0';

const settings = new Map();

/** The title prefix, from the configuration. */
export function parseSettings(configJson) {
  const config = JSON.parse(configJson);
  const unknown = Object.keys(config).filter((k) => k !== 'prefix').sort();
  if (unknown.length) throw `unknown key \`${unknown[0]}\` (this plugin reads \`prefix\`)`;
  const prefix = config.prefix ?? '[{{name}}]';
  if (typeof prefix !== 'string') throw `\`prefix\`: expected a string, got ${JSON.stringify(prefix)}`;
  return prefix;
}

/** The frame for `alert`: what /v1/ws clients and its ?rule= filter read. */
export function render(alert, prefix) {
  return JSON.stringify({
    type: 'alert',
    rule: alert.rule,
    key: alert.key,
    count: Number(alert.count),
    title: `${prefix} ${alert.title}`,
    summary: alert.summary,
  });
}

export function configure(binding, config) {
  settings.set(binding, parseSettings(config));
}

export function deliver(binding, alert) {
  // Throws (naming what was refused) when the rule did not grant it.
  broadcast(render(alert, settings.get(binding)));
}
