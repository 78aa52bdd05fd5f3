// Unit tests of the plugin's logic, natively: `npm test` (node --test).
import { register } from 'node:module';
import { test } from 'node:test';
import assert from 'node:assert/strict';

register('./hooks.mjs', import.meta.url);
const app = await import('../src/app.js');

test('low alerts go to the quiet channels only', () => {
  app.configure('b', '{"quiet": ["websocket"]}');
  const channels = ['websocket', 'email'];
  assert.deepEqual(app.route('b', { severity: 'low' }, channels), ['websocket']);
  assert.deepEqual(app.route('b', { severity: 'high' }, channels), channels);
  assert.throws(() => app.parseSettings('{"loud": []}'), /unknown key/);
});
