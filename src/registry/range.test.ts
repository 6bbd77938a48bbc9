import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRange } from './range.js';

test('single ranges per RFC 9110', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100), { kind: 'range', range: { start: 0, end: 9 } });
  assert.deepEqual(parseRange('bytes=90-', 100), { kind: 'range', range: { start: 90, end: 99 } });
  assert.deepEqual(parseRange('bytes=90-500', 100), { kind: 'range', range: { start: 90, end: 99 } });
  assert.deepEqual(parseRange('bytes=-10', 100), { kind: 'range', range: { start: 90, end: 99 } });
  assert.deepEqual(parseRange('bytes=-500', 100), { kind: 'range', range: { start: 0, end: 99 } });
});

test('unsatisfiable ranges', () => {
  assert.deepEqual(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=-0', 100), { kind: 'unsatisfiable' });
});

test('multi-range, other units and bad syntax are served whole', () => {
  assert.deepEqual(parseRange(undefined, 100), { kind: 'none' });
  assert.deepEqual(parseRange('bytes=0-1,5-6', 100), { kind: 'none' });
  assert.deepEqual(parseRange('items=0-1', 100), { kind: 'none' });
  assert.deepEqual(parseRange('bytes=9-1', 100), { kind: 'none' });
  assert.deepEqual(parseRange('bytes=-', 100), { kind: 'none' });
});
