// Helpers every part of the admin page shares: the API call (with the
// admin token and the operator's name), table cells, buttons, errors.

export const $ = (id) => document.getElementById(id);
const store = window.localStorage;

export const user = () => $("user").value.trim() || "dashboard";
export const token = () => $("token").value;

export function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

// Calls the API; a failure is shown in the error bar and thrown.
export async function api(path, options = {}) {
  const headers = { "x-tocsin-user": user(), ...(options.headers || {}) };
  if (token()) headers.authorization = `Bearer ${token()}`;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const r = await fetch(path, { ...options, headers });
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!r.ok) {
    const why = typeof body === "string" ? body : (body && body.error) || JSON.stringify(body);
    const msg = r.status === 401 ? `${path}: the admin token is missing or wrong` : `${path}: ${r.status} ${why}`;
    showError(msg);
    throw new Error(msg);
  }
  showError("");
  return body;
}

export function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

// A button; `act` marks an action (hidden in a read-only view).
export function button(parent, label, onClick, act = true) {
  const b = document.createElement("button");
  b.textContent = label;
  if (act) b.classList.add("act");
  b.addEventListener("click", onClick);
  parent.appendChild(b);
  return b;
}

export function row(body, cells) {
  const tr = document.createElement("tr");
  for (const c of cells) cell(tr, c);
  body.appendChild(tr);
  return tr;
}

export const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");
export const dateTime = (ms) => (ms ? new Date(ms).toLocaleString() : "");
export const number = (n) => (n ?? 0).toLocaleString();

export function remember() {
  const params = new URLSearchParams(location.search);
  if (params.get("token")) store.setItem("tocsin.token", params.get("token"));
  $("token").value = store.getItem("tocsin.token") || "";
  $("user").value = store.getItem("tocsin.user") || "";
  $("user").addEventListener("change", () => store.setItem("tocsin.user", $("user").value));
  return (onToken) => $("token").addEventListener("change", () => { store.setItem("tocsin.token", token()); onToken(); });
}

// Whether this viewer may act (`/v1/access`): a read-only view hides
// every action.
export async function checkAccess() {
  const a = await api("/v1/access").catch(() => ({ admin: false, read: false }));
  document.body.classList.toggle("read-only", !a.admin);
  $("access").hidden = a.admin;
  $("access").textContent = a.read
    ? "Read-only view: enter the admin token to acknowledge, silence or replay."
    : "Enter the admin token to see this engine.";
  return a;
}
