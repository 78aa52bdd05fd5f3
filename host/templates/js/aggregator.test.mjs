// Unit tests of the plugin's logic, natively: `npm test` (node --test).
import { register } from 'node:module';
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';

register('./hooks.mjs', import.meta.url);
const host = await import('./fake-host.mjs');
const app = await import('../src/app.js');

const event = (errorCode, receivedAt) => ({
  eventId: 'e', source: 'http', errorCode, severity: 'high', message: 'it failed',
  serviceName: 'svc', timestamp: receivedAt, receivedAt, metadata: [],
});

beforeEach(() => host.reset());

test('configuration defaults and errors', () => {
  assert.deepEqual(app.parseSettings('{}'), { threshold: 3, windowMs: 60000 });
  assert.equal(app.parseSettings('{"window": "5m"}').windowMs, 300000);
  assert.throws(() => app.parseSettings('{"threshold": 0}'), /threshold/);
  assert.throws(() => app.parseSettings('{"treshold": 2}'), /unknown key/);
});

test('alerts on the threshold-th event within the window', () => {
  app.configure('b', '{"threshold": 2, "window": "1m"}');
  assert.deepEqual(app.aggregate('b', [event('E1', 1000n)]), []);
  const alerts = app.aggregate('b', [event('E1', 2000n), event('E2', 2500n)]);
  assert.deepEqual(alerts.map((a) => [a.key, a.count]), [['E1|svc', 2n]]);
  assert.equal(host.logs.length, 1);
});
