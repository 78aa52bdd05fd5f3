// tocsin's admin page: the live stream and the JSON APIs the engine
// serves, in one page with no build step (served from the binary). Every
// call carries the admin token (kept in this browser only) and the
// operator's name (X-Tocsin-User, for the audit log).

import { $, api, cell, button, time, dateTime, number, showError, user, token, remember, checkAccess } from "./lib.js";
import * as overview from "./overview.js";

const FEED_MAX = 1000;
const onToken = remember();

// ---- tabs
const loaders = { overview: overview.load };
let current = "live";
document.querySelectorAll("nav button").forEach((b) =>
  b.addEventListener("click", () => showTab(b.dataset.tab)));
function showTab(name) {
  current = name;
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((s) => { s.hidden = s.id !== name; });
  if (loaders[name]) loaders[name]().catch(() => {});
}
// The overview follows the numbers while it is shown.
setInterval(() => { if (current === "overview" && !document.hidden) overview.load().catch(() => {}); }, 3000);
$("o-range").addEventListener("change", () => overview.load().catch(() => {}));
$("o-by").addEventListener("change", () => overview.draw());
window.addEventListener("resize", () => overview.draw());

// ---- live: frames are queued and drawn in batches (ten times a
// second at most), newest first, the list bounded to FEED_MAX rows.
let paused = false;
let queue = [];
let held = [];
let shown = 0;
let drawing = null;
$("pause").addEventListener("click", () => {
  paused = !paused;
  $("pause").textContent = paused ? `Resume (${held.length})` : "Pause";
  if (!paused) { queue.push(...held); held = []; schedule(); }
});
["f-severity", "f-service", "f-rule"].forEach((id) => $(id).addEventListener("input", applyFilter));

function visible(tr) {
  const sev = $("f-severity").value;
  const svc = $("f-service").value.trim();
  const rule = $("f-rule").value.trim();
  return (!sev || tr.dataset.severity === sev)
    && (!svc || (tr.dataset.service || "").includes(svc))
    && (!rule || (tr.dataset.rule || "").includes(rule));
}
function applyFilter() {
  for (const tr of $("feed").children) tr.hidden = !visible(tr);
}

function frameRow(n) {
  const labels = n.labels || {};
  const tr = document.createElement("tr");
  tr.className = `sev-${n.severity}` + (n.status === "resolved" ? " resolved" : "");
  Object.assign(tr.dataset, { severity: n.severity, service: labels.service || "", rule: n.rule, key: n.key, code: labels["error-code"] || "" });
  cell(tr, time(n.lastSeen || Date.now()));
  cell(tr, n.severity);
  cell(tr, n.rule);
  cell(tr, labels.service);
  cell(tr, n.status === "resolved" ? `✅ ${n.title}` : n.title, "title");
  cell(tr, n.count);
  const actions = cell(tr, "");
  if (n.status !== "resolved") {
    const ackButton = button(actions, "Ack", () => ackFrame(tr, ackButton));
    button(actions, "Silence like this", () => silenceLike({ rule: n.rule, service: labels.service, alertname: labels["error-code"] }));
  }
  tr.hidden = !visible(tr);
  return tr;
}

function schedule() {
  if (!drawing) drawing = setTimeout(drawFeed, 100);
}
function drawFeed() {
  drawing = null;
  const batch = queue;
  queue = [];
  shown += batch.length;
  const fragment = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= Math.max(0, batch.length - FEED_MAX); i--) fragment.appendChild(frameRow(batch[i]));
  const feed = $("feed");
  feed.prepend(fragment);
  while (feed.childElementCount > FEED_MAX) feed.lastElementChild.remove();
  $("live-count").textContent = `${number(shown)} notifications`;
}

async function ackFrame(tr, ackButton) {
  const alerts = await api("/api/v2/alerts");
  const a = alerts.find((x) => x.key === tr.dataset.key && x.receivers?.[0]?.name === tr.dataset.rule);
  if (!a) { showError(`no active alert for ${tr.dataset.rule} ${tr.dataset.key}: it ended`); return; }
  await ack(a.fingerprint);
  const done = document.createElement("span");
  done.textContent = `acknowledged by ${user()} `;
  ackButton.replaceWith(done);
}

async function ack(fingerprint) {
  return api(`/v1/alerts/${fingerprint}/ack`, { method: "POST", json: { by: user(), comment: "from the dashboard" } });
}

let socket = null;
let retry = 500;
function connect() {
  if (socket) { socket.onclose = null; socket.close(); }
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws${token() ? `?token=${encodeURIComponent(token())}` : ""}`;
  socket = new WebSocket(url);
  socket.onopen = () => { retry = 500; $("conn").textContent = "live"; $("conn").className = "conn up"; };
  socket.onmessage = (m) => {
    let n;
    try { n = JSON.parse(m.data); } catch { return; }
    if (paused) {
      held.push(n);
      if (held.length > FEED_MAX) held.splice(0, held.length - FEED_MAX);
      $("pause").textContent = `Resume (${held.length})`;
    } else {
      queue.push(n);
      if (queue.length > FEED_MAX) { shown += queue.length - FEED_MAX; queue.splice(0, queue.length - FEED_MAX); }
      schedule();
    }
  };
  socket.onclose = () => {
    $("conn").textContent = "offline"; $("conn").className = "conn down";
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  };
}

// ---- alerts
loaders.alerts = async () => {
  const alerts = await api("/api/v2/alerts?silenced=true&inhibited=true");
  const body = $("alert-rows");
  body.replaceChildren();
  for (const a of alerts) {
    const tr = document.createElement("tr");
    const sev = a.labels.severity || "";
    const rule = a.receivers?.[0]?.name;
    tr.className = `sev-${sev}`;
    tr.dataset.fingerprint = a.fingerprint;
    const state = cell(tr, "");
    const badge = (text, cls) => { const s = document.createElement("span"); s.className = `badge ${cls}`; s.textContent = text; state.appendChild(s); };
    badge(a.status.state === "active" ? "firing" : "suppressed", a.status.state);
    if (a.status.silencedBy.length) badge("silenced", "suppressed");
    if (a.status.inhibitedBy.length) badge("inhibited", "suppressed");
    if (a.acknowledged) badge(`acknowledged by ${a.acknowledged.by}`, "acked");
    cell(tr, sev);
    cell(tr, rule);
    cell(tr, Object.entries(a.labels).filter(([k]) => !["rule", "severity", "alertname"].includes(k)).map(([k, v]) => `${k}=${v}`).join(" "));
    cell(tr, a.annotations.title);
    cell(tr, dateTime(Date.parse(a.startsAt)));
    cell(tr, a.escalated ? `step ${a.escalated}` : "");
    const actions = cell(tr, "");
    if (a.acknowledged) {
      button(actions, "Un-ack", async () => { await api(`/v1/alerts/${a.fingerprint}/ack`, { method: "DELETE" }); loaders.alerts(); });
    } else {
      button(actions, "Ack", async () => { await ack(a.fingerprint); loaders.alerts(); });
    }
    button(actions, "Silence like this", () => silenceLike({ rule, service: a.labels.service, alertname: a.labels.alertname }));
    button(actions, "Trace", () => traceOfAlert(rule, a.key), false);
    body.appendChild(tr);
  }
};
$("alerts-refresh").addEventListener("click", () => loaders.alerts());

// The trace of a sample event of the alert's newest notification.
async function traceOfAlert(rule, key) {
  const h = await api(`/v1/notifications?rule=${encodeURIComponent(rule)}&key=${encodeURIComponent(key)}&limit=20`);
  const n = h.notifications.find((x) => x.key === key && x.alert?.events?.length);
  if (!n) { showError(`no event of ${rule} ${key} is in the history any more`); return; }
  showTrace(n.alert.events[0]);
}

// ---- silences
function silenceLike(labels) {
  const m = Object.entries(labels).filter(([, v]) => v).map(([k, v]) => `${k}="${v}"`);
  $("s-matchers").value = m.join(", ");
  showTab("silences");
  $("s-comment").focus();
}

/// Alertmanager's matcher text (`a="x", b=~"y.*"`) as API matchers.
function parseMatchers(text) {
  const out = [];
  const re = /\s*([A-Za-z_][\w.-]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)/y;
  let m;
  while (re.lastIndex < text.length && (m = re.exec(text))) {
    let value = m[3].trim();
    if (value.startsWith('"')) value = JSON.parse(value);
    out.push({ name: m[1], value, isRegex: m[2].includes("~"), isEqual: !m[2].startsWith("!") });
  }
  if (!out.length || re.lastIndex < text.trim().length) throw new Error(`matchers: cannot read ${JSON.stringify(text)} (write name="value", name=~"regex", …)`);
  return out;
}

function parseDuration(text) {
  const m = /^(\d+)\s*(s|m|h|d)$/.exec(text.trim());
  if (!m) throw new Error(`duration: ${JSON.stringify(text)} (write 30m, 2h, 1d)`);
  return Number(m[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2]];
}

$("silence-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  let matchers, ms;
  try { matchers = parseMatchers($("s-matchers").value); ms = parseDuration($("s-duration").value); } catch (err) { showError(err.message); return; }
  const now = Date.now();
  await api("/api/v2/silences", {
    method: "POST",
    json: { matchers, startsAt: new Date(now).toISOString(), endsAt: new Date(now + ms).toISOString(), createdBy: user(), comment: $("s-comment").value },
  });
  $("s-comment").value = "";
  loaders.silences();
});

loaders.silences = async () => {
  const list = await api("/api/v2/silences");
  const body = $("silence-rows");
  body.replaceChildren();
  list.sort((a, b) => (a.status.state === "expired") - (b.status.state === "expired"));
  for (const s of list) {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    cell(tr, s.status.state);
    const op = (m) => (m.isRegex ? (m.isEqual ? "=~" : "!~") : (m.isEqual ? "=" : "!="));
    cell(tr, s.matchers.map((m) => `${m.name}${op(m)}"${m.value}"`).join(", "));
    cell(tr, dateTime(Date.parse(s.endsAt)));
    cell(tr, s.createdBy);
    cell(tr, s.comment);
    const actions = cell(tr, "");
    if (s.status.state !== "expired") {
      button(actions, "Expire", async () => { await api(`/api/v2/silence/${s.id}`, { method: "DELETE" }); loaders.silences(); });
    }
    body.appendChild(tr);
  }
};

// ---- rules and plugins
loaders.rules = async () => {
  // Stats may be off ([engine] stats = false): the columns stay empty.
  const [rules, policies, stats] = await Promise.all([api("/v1/rules"), api("/v1/policies"),
    api("/v1/stats?range=24h").catch(() => null)]);
  const counts = (stats && stats.rules) || {};
  const errors = $("rule-errors");
  errors.replaceChildren();
  const failing = [...rules.rules, ...policies.files].filter((r) => r.last_error);
  for (const r of failing) {
    const d = document.createElement("div");
    d.className = "error";
    d.textContent = r.last_error;
    errors.appendChild(d);
  }
  const body = $("rule-rows");
  body.replaceChildren();
  for (const r of rules.rules) {
    const tr = document.createElement("tr");
    tr.dataset.rule = r.name;
    cell(tr, r.name);
    cell(tr, r.active ? (r.isolated ? "isolated" : "active") : (r.waiting || "inactive"));
    cell(tr, r.aggregate);
    cell(tr, (r.channels || []).join(", "));
    cell(tr, (r.hash || "").slice(0, 12));
    cell(tr, time(r.loaded_at));
    const c = counts[r.name];
    cell(tr, c ? String(c.events) : "–", "num");
    cell(tr, c ? String(c.alerts) : "–", "num");
    const errs = r.plugin_errors || {};
    const kinds = Object.entries(errs.by_kind || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
    cell(tr, errs.last_error ? `${kinds} — last: ${errs.last_error}` : kinds);
    body.appendChild(tr);
  }
};

// ---- deliveries and history
loaders.deliveries = async () => {
  const status = $("d-status").value;
  const [list, channels] = await Promise.all([api(`/v1/deliveries?status=${status}`), api("/v1/channels")]);
  const targets = $("channel-rows");
  targets.replaceChildren();
  for (const b of channels.breakers) {
    const tr = document.createElement("tr");
    cell(tr, b.target);
    cell(tr, b.state, `circuit-${b.state}`);
    cell(tr, number(b.calls_in_window), "num");
    cell(tr, number(b.errors_in_window), "num");
    cell(tr, number(b.times_opened), "num");
    cell(tr, b.retry_in_ms != null ? `${Math.ceil(b.retry_in_ms / 1000)} s` : "");
    targets.appendChild(tr);
  }
  if (!channels.breakers.length) cell(targets.insertRow(), "no delivery attempted yet", "empty").colSpan = 6;
  const counts = Object.entries(channels.deliveries).map(([k, v]) => `${k}: ${number(v)}`);
  counts.push(`in flight: ${channels.inFlight}`, `WebSocket clients: ${channels.websocketClients}`, `email ${channels.emailEnabled ? "on" : "off"}`);
  $("delivery-counts").textContent = counts.join(" · ");
  const body = $("delivery-rows");
  body.replaceChildren();
  for (const d of list.deliveries) {
    const tr = document.createElement("tr");
    tr.dataset.id = d.id;
    cell(tr, d.status);
    cell(tr, d.rule);
    cell(tr, d.channel);
    cell(tr, d.target);
    cell(tr, `${d.attempts} / ${d.maxAttempts}`);
    cell(tr, d.lastError);
    const actions = cell(tr, "");
    if (d.status === "dead") button(actions, "Replay", async () => { await api(`/v1/deliveries/${d.id}/replay`, { method: "POST" }); loaders.deliveries(); });
    body.appendChild(tr);
  }
  if (!list.deliveries.length) cell(body.insertRow(), `no ${status} delivery`, "empty").colSpan = 7;
  await history();
};
$("d-status").addEventListener("change", () => loaders.deliveries());
$("replay-all").addEventListener("click", async () => { await api("/v1/deliveries/replay", { method: "POST" }); loaders.deliveries(); });

async function history() {
  const q = new URLSearchParams({ limit: "100" });
  const ms = (id) => ($(id).value ? String(new Date($(id).value).getTime()) : "");
  if ($("h-rule").value.trim()) q.set("rule", $("h-rule").value.trim());
  if ($("h-key").value.trim()) q.set("key", $("h-key").value.trim());
  if (ms("h-since")) q.set("since", ms("h-since"));
  if (ms("h-until")) q.set("until", ms("h-until"));
  const h = await api(`/v1/notifications?${q}`);
  const body = $("history-rows");
  body.replaceChildren();
  for (const n of h.notifications) {
    const tr = document.createElement("tr");
    tr.className = `sev-${n.severity}`;
    cell(tr, dateTime(n.createdAt));
    cell(tr, n.severity);
    cell(tr, n.rule);
    cell(tr, n.key);
    cell(tr, n.title);
    cell(tr, n.deliveries.map((d) => `${d.channel}: ${d.status}`).join(", "));
    const actions = cell(tr, "");
    if (n.alert?.events?.length) button(actions, "Trace", () => showTrace(n.alert.events[0]), false);
    body.appendChild(tr);
  }
  if (!h.notifications.length) cell(body.insertRow(), "no notification matches", "empty").colSpan = 7;
}
$("history-form").addEventListener("submit", (e) => { e.preventDefault(); history().catch(() => {}); });

// ---- trace
async function showTrace(id) {
  $("t-event").value = id;
  showTab("trace");
  const t = await api(`/v1/events/${encodeURIComponent(id)}/trace`);
  const body = $("trace-rows");
  body.replaceChildren();
  for (const s of t.steps) {
    const tr = document.createElement("tr");
    tr.dataset.stage = s.stage;
    cell(tr, new Date(s.at).toLocaleTimeString(undefined, { hour12: false, fractionalSecondDigits: 3 }));
    cell(tr, s.stage, `stage stage-${s.stage}`);
    cell(tr, s.rule);
    cell(tr, s.detail);
    cell(tr, (s.deliveries || []).map((d) => `${d.channel} → ${d.target}: ${d.status} after ${d.attempts} attempt(s)${d.lastError ? ` (${d.lastError})` : ""}`).join("; "));
    body.appendChild(tr);
  }
}
$("trace-form").addEventListener("submit", (e) => { e.preventDefault(); showTrace($("t-event").value.trim()).catch(() => {}); });

onToken(() => { connect(); checkAccess(); });
checkAccess();
connect();
