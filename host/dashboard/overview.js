// The overview: events per step over the range, stacked by error code or
// service, with the alerts on their own axis; the top 10 codes, services
// and rules; each service's health. Drawn on a canvas (thousands of
// points cost one path per series), refreshed every few seconds.

import { $, api, cell, number, dateTime } from "./lib.js";

const COLOURS = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#c62828", "#5d4037", "#9e9d24", "#90a4ae"];
let last = null;

export async function load() {
  const range = $("o-range").value;
  const r = await api(`/v1/stats?range=${range}`);
  last = r;
  const n = r.events.length;
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  $("o-events").textContent = number(sum(r.events));
  $("o-alerts").textContent = number(sum(r.alerts));
  $("o-rate").textContent = number(r.events[n - 1] || 0);
  $("o-rate-label").textContent = r.stepMs >= 3600000 ? "events this hour" : "events this minute";
  draw();
  table($("top-codes"), r.top.codes);
  table($("top-services"), r.top.services);
  table($("top-rules"), r.top.rules);
  health(r.services);
}

function table(body, rows) {
  body.replaceChildren();
  const max = Math.max(1, ...rows.map((x) => x.events));
  for (const x of rows) {
    const tr = document.createElement("tr");
    cell(tr, x.name);
    const bar = cell(tr, "", "bar");
    const fill = document.createElement("span");
    fill.style.width = `${(100 * x.events) / max}%`;
    bar.appendChild(fill);
    cell(tr, number(x.events), "num");
    cell(tr, number(x.alerts), "num");
    body.appendChild(tr);
  }
  if (!rows.length) cell(body.insertRow(), "nothing in this range", "empty").colSpan = 4;
}

function health(services) {
  const body = $("health-rows");
  body.replaceChildren();
  for (const s of services) {
    const tr = document.createElement("tr");
    tr.dataset.service = s.name;
    cell(tr, s.name);
    const badge = cell(tr, "");
    const b = document.createElement("span");
    b.className = `badge trend-${s.trend}`;
    b.textContent = { rising: "▲ rising", falling: "▼ falling", steady: "● steady", quiet: "○ quiet" }[s.trend] || s.trend;
    badge.appendChild(b);
    cell(tr, s.recentPerStep.toFixed(1), "num");
    cell(tr, s.baselinePerStep.toFixed(1), "num");
    cell(tr, "", "spark").appendChild(spark(s.spark));
    const e = s.lastError;
    cell(tr, e ? `${dateTime(e.at)} · ${e.code} · ${e.message}` : "", "last");
    body.appendChild(tr);
  }
  if (!services.length) cell(body.insertRow(), "no errors in this range", "empty").colSpan = 6;
}

function spark(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 120 24");
  svg.setAttribute("width", "120");
  svg.setAttribute("height", "24");
  const max = Math.max(1, ...values);
  const step = 120 / Math.max(1, values.length - 1);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", values.map((v, i) => `${(i * step).toFixed(1)},${(22 - (20 * v) / max).toFixed(1)}`).join(" "));
  svg.appendChild(line);
  return svg;
}

function nice(max) {
  if (max <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= max);
}

export function draw() {
  const r = last;
  const canvas = $("trend");
  if (!r || canvas.offsetParent === null) return;
  const by = $("o-by").value === "service" ? r.byService : r.byCode;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const L = 52, R = 44, T = 10, B = 24;
  const pw = w - L - R, ph = h - T - B;
  const n = r.times.length;
  const x = (i) => L + (n > 1 ? (i * pw) / (n - 1) : 0);
  const top = nice(Math.max(0, ...r.events));
  const atop = nice(Math.max(0, ...r.alerts));
  const y = (v, m) => T + ph * (1 - v / m);
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeStyle = "#e3e6ea"; ctx.fillStyle = "#5f6b76"; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4, yy = y(v, top);
    ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(L + pw, yy); ctx.stroke();
    ctx.textAlign = "right"; ctx.fillText(number(Math.round(v)), L - 6, yy + 4);
    ctx.textAlign = "left"; ctx.fillStyle = "#c62828"; ctx.fillText(number(Math.round((atop * k) / 4)), L + pw + 6, yy + 4); ctx.fillStyle = "#5f6b76";
  }
  ctx.textAlign = "center";
  for (let k = 0; k <= 6; k++) {
    const i = Math.round(((n - 1) * k) / 6);
    const d = new Date(r.times[i] || 0);
    const label = r.stepMs >= 3600000 ? d.toLocaleDateString(undefined, { weekday: "short", hour: "2-digit" }) : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    ctx.fillText(label, x(i), h - 6);
  }
  // Stacked areas, bottom series first.
  const base = new Array(n).fill(0);
  by.events.forEach((series, s) => {
    const upper = series.map((v, i) => base[i] + v);
    ctx.beginPath();
    for (let i = 0; i < n; i++) ctx.lineTo(x(i), y(upper[i], top));
    for (let i = n - 1; i >= 0; i--) ctx.lineTo(x(i), y(base[i], top));
    ctx.closePath();
    ctx.fillStyle = COLOURS[s % COLOURS.length];
    ctx.globalAlpha = 0.75; ctx.fill(); ctx.globalAlpha = 1;
    upper.forEach((v, i) => { base[i] = v; });
  });
  ctx.strokeStyle = "#c62828"; ctx.lineWidth = 2;
  ctx.beginPath();
  r.alerts.forEach((v, i) => ctx.lineTo(x(i), y(v, atop)));
  ctx.stroke();
  const legend = $("o-legend");
  legend.replaceChildren();
  by.names.forEach((name, s) => {
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${COLOURS[s % COLOURS.length]}"></i>`;
    item.append(name);
    legend.appendChild(item);
  });
  const alerts = document.createElement("span");
  alerts.innerHTML = `<i class="line"></i>`;
  alerts.append("alerts (right axis)");
  legend.appendChild(alerts);
  canvas.onmousemove = (e) => {
    const i = Math.max(0, Math.min(n - 1, Math.round(((e.offsetX - L) * (n - 1)) / pw)));
    const parts = by.names.map((name, s) => `${name} ${by.events[s][i]}`).filter((t) => !t.endsWith(" 0"));
    $("o-hover").textContent = `${dateTime(r.times[i])}: ${r.events[i]} events, ${r.alerts[i]} alerts${parts.length ? ` — ${parts.join(", ")}` : ""}`;
  };
}
