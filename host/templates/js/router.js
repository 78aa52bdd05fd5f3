// `{{name}}`: a router. Critical and high alerts go to every channel of the
// rule; medium and low ones only to the channels named in `quiet` (default
// `["websocket"]`).
//
//     [route]
//     plugin = "{{name}}"
//     config = { quiet = ["websocket"] }
//
// Built by `tocsin plugin build` with jco (ComponentizeJS) against `wit/`.
const settings = new Map();

/** The channels that get medium and low alerts, from the configuration. */
export function parseSettings(configJson) {
  const config = JSON.parse(configJson);
  const unknown = Object.keys(config).filter((k) => k !== 'quiet').sort();
  if (unknown.length) throw `unknown key \`${unknown[0]}\` (this plugin reads \`quiet\`)`;
  const quiet = config.quiet ?? ['websocket'];
  if (!Array.isArray(quiet) || !quiet.every((c) => typeof c === 'string')) {
    throw `\`quiet\`: expected a list of channel names, got ${JSON.stringify(quiet)}`;
  }
  return quiet;
}

export function configure(binding, config) {
  settings.set(binding, parseSettings(config));
}

export function route(binding, alert, channels) {
  if (alert.severity === 'critical' || alert.severity === 'high') return channels;
  const quiet = settings.get(binding);
  return channels.filter((c) => quiet.includes(c));
}
