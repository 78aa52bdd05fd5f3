// An in-memory stand-in for the tocsin host, so the plugin's logic runs
// natively under `node --test` (hooks.mjs points the plugin's
// `tocsin:plugin/...` imports here). It mirrors the WIT's documented
// semantics closely enough for unit tests; `tocsin plugin test` runs the
// built component under the engine itself. `reset()` clears state, logs
// and deliveries between tests.
export const state = new Map();
export const logs = [];
export const deliveries = [];

export function reset() {
  state.clear();
  logs.length = 0;
  deliveries.length = 0;
}

// log
export function log(level, message) {
  logs.push([level, message]);
}

// state (u64/s64 are BigInts, u32 numbers, as in the component)
export function windowAdd(key, delta, now, windowMs, threshold) {
  let [count, start] = state.get(key) ?? [0n, now];
  if (now - start >= windowMs) [count, start] = [0n, now];
  const total = count + BigInt(delta);
  const fires = threshold > 0n ? total / threshold : 0n;
  const after = threshold > 0n ? total % threshold : total;
  if (after > 0n) state.set(key, [after, fires > 0n ? now : start]);
  else state.delete(key);
  return { before: count, fires: Number(fires), after, windowStart: start };
}
export const get = (key) => state.get(key);
export const set = (key, value) => void state.set(key, value);
export const del = (key) => void state.delete(key);
export { del as delete };

// websocket, email, http
export const broadcast = (body) => void deliveries.push(['websocket', body]);
export const send = (what) => void deliveries.push([what.url ? 'http' : 'email', what]);
