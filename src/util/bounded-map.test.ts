import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BoundedMap } from './bounded-map.js';

test('a bounded map holds at most max entries, forgetting the oldest first', () => {
  const map = new BoundedMap<string, number>(3);
  for (const [i, key] of ['a', 'b', 'c'].entries()) map.set(key, i);
  assert.equal(map.get('a'), 0);
  map.set('d', 3);
  assert.equal(map.size, 3);
  assert.equal(map.get('a'), undefined, 'the oldest went');
  assert.deepEqual(['b', 'c', 'd'].map((k) => map.get(k)), [1, 2, 3]);
  // Setting a key it holds replaces the value and forgets nothing.
  map.set('c', 20);
  assert.equal(map.size, 3);
  assert.deepEqual(['b', 'c', 'd'].map((k) => map.get(k)), [1, 20, 3]);
  for (let i = 0; i < 1000; i++) map.set(`k${i}`, i);
  assert.equal(map.size, 3);
  assert.deepEqual(['k997', 'k998', 'k999'].map((k) => map.get(k)), [997, 998, 999]);
});
