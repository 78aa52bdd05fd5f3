// tocsin's admin page: the live stream and the JSON APIs the engine
// already serves, in one page with no build step (served from the binary).
// Every call carries the admin token (kept in this browser only) and the
// operator's name (X-Tocsin-User, for the audit log).

const $ = (id) => document.getElementById(id);
const FEED_MAX = 2000;
const store = window.localStorage;
const params = new URLSearchParams(location.search);
if (params.get("token")) store.setItem("tocsin.token", params.get("token"));
$("token").value = store.getItem("tocsin.token") || "";
$("user").value = store.getItem("tocsin.user") || "";
$("token").addEventListener("change", () => { store.setItem("tocsin.token", $("token").value); connect(); });
$("user").addEventListener("change", () => store.setItem("tocsin.user", $("user").value));

const user = () => $("user").value.trim() || "dashboard";

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

async function api(path, options = {}) {
  const headers = { "x-tocsin-user": user(), ...(options.headers || {}) };
  const token = $("token").value;
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const r = await fetch(path, { ...options, headers });
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!r.ok) {
    const why = typeof body === "string" ? body : JSON.stringify(body);
    const msg = r.status === 401 ? `${path}: the admin token is missing or wrong` : `${path}: ${r.status} ${why}`;
    showError(msg);
    throw new Error(msg);
  }
  showError("");
  return body;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function button(td, label, onClick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.addEventListener("click", onClick);
  td.appendChild(b);
  return b;
}

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");

// ---- tabs
const loaders = {};
document.querySelectorAll("nav button").forEach((b) =>
  b.addEventListener("click", () => showTab(b.dataset.tab)));
function showTab(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((s) => { s.hidden = s.id !== name; });
  if (loaders[name]) loaders[name]().catch(() => {});
}

// ---- live
let paused = false;
let held = [];
let shown = 0;
$("pause").addEventListener("click", () => {
  paused = !paused;
  $("pause").textContent = paused ? `Resume (${held.length})` : "Pause";
  if (!paused) { held.forEach(addFrame); held = []; }
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

function addFrame(n) {
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
  $("feed").prepend(tr);
  while ($("feed").children.length > FEED_MAX) $("feed").lastChild.remove();
  shown += 1;
  $("live-count").textContent = `${shown} notifications`;
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
  const token = $("token").value;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`;
  socket = new WebSocket(url);
  socket.onopen = () => { retry = 500; $("conn").textContent = "live"; $("conn").className = "conn up"; };
  socket.onmessage = (m) => {
    let n;
    try { n = JSON.parse(m.data); } catch { return; }
    if (paused) { held.push(n); $("pause").textContent = `Resume (${held.length})`; } else addFrame(n);
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
    tr.className = `sev-${sev}`;
    tr.dataset.fingerprint = a.fingerprint;
    const state = cell(tr, "");
    const badge = (text, cls) => { const s = document.createElement("span"); s.className = `badge ${cls}`; s.textContent = text; state.appendChild(s); };
    badge(a.status.state === "active" ? "firing" : "suppressed", a.status.state);
    if (a.status.silencedBy.length) badge("silenced", "suppressed");
    if (a.status.inhibitedBy.length) badge("inhibited", "suppressed");
    if (a.acknowledged) badge(`acknowledged by ${a.acknowledged.by}`, "acked");
    cell(tr, sev);
    cell(tr, a.receivers?.[0]?.name);
    cell(tr, Object.entries(a.labels).filter(([k]) => !["rule", "severity", "alertname"].includes(k)).map(([k, v]) => `${k}=${v}`).join(" "));
    cell(tr, a.annotations.title);
    cell(tr, new Date(a.startsAt).toLocaleString());
    cell(tr, a.escalated ? `step ${a.escalated}` : "");
    const actions = cell(tr, "");
    if (a.acknowledged) {
      button(actions, "Un-ack", async () => { await api(`/v1/alerts/${a.fingerprint}/ack`, { method: "DELETE" }); loaders.alerts(); });
    } else {
      button(actions, "Ack", async () => { await ack(a.fingerprint); loaders.alerts(); });
    }
    button(actions, "Silence like this", () => silenceLike({ rule: a.receivers?.[0]?.name, service: a.labels.service, alertname: a.labels.alertname }));
    body.appendChild(tr);
  }
};
$("alerts-refresh").addEventListener("click", () => loaders.alerts());

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
    cell(tr, new Date(s.endsAt).toLocaleString());
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
  const [rules, policies] = await Promise.all([api("/v1/rules"), api("/v1/policies")]);
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
    cell(tr, r.name);
    cell(tr, r.active ? "active" : (r.waiting || "inactive"));
    cell(tr, r.aggregate);
    cell(tr, (r.channels || []).join(", "));
    cell(tr, (r.hash || "").slice(0, 12));
    cell(tr, time(r.loaded_at));
    const errs = r.plugin_errors || {};
    const kinds = Object.entries(errs.by_kind || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
    cell(tr, errs.last_error ? `${kinds} — last: ${errs.last_error}` : kinds);
    body.appendChild(tr);
  }
};

// ---- deliveries
loaders.deliveries = async () => {
  const status = $("d-status").value;
  const [list, channels] = await Promise.all([api(`/v1/deliveries?status=${status}`), api("/v1/channels")]);
  $("channels").textContent = JSON.stringify(channels);
  const body = $("delivery-rows");
  body.replaceChildren();
  for (const d of list.deliveries) {
    const tr = document.createElement("tr");
    cell(tr, d.status);
    cell(tr, d.rule);
    cell(tr, d.channel);
    cell(tr, d.target);
    cell(tr, d.attempts);
    cell(tr, d.last_error);
    const actions = cell(tr, "");
    if (d.status === "dead") button(actions, "Replay", async () => { await api(`/v1/deliveries/${d.id}/replay`, { method: "POST" }); loaders.deliveries(); });
    body.appendChild(tr);
  }
};
$("d-status").addEventListener("change", () => loaders.deliveries());
$("replay-all").addEventListener("click", async () => { await api("/v1/deliveries/replay", { method: "POST" }); loaders.deliveries(); });

connect();
