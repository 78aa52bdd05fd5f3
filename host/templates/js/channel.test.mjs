// Unit tests of the plugin's logic, natively: `npm test` (node --test).
import { register } from 'node:module';
import { test } from 'node:test';
import assert from 'node:assert/strict';

register('./hooks.mjs', import.meta.url);
const host = await import('./fake-host.mjs');
const app = await import('../src/app.js');

test('the frame carries the prefixed title', () => {
  host.reset();
  app.configure('b', '{"prefix": ">>"}');
  app.deliver('b', { rule: 'test', key: 'E1|svc', count: 3n, title: 'E1 x3 on svc', summary: '' });
  assert.equal(host.deliveries.length, 1);
  const [kind, body] = host.deliveries[0];
  assert.equal(kind, 'websocket');
  const frame = JSON.parse(body);
  assert.equal(frame.title, '>> E1 x3 on svc');
  assert.equal(frame.key, 'E1|svc');
});
