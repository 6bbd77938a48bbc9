import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layerGroups, type StorePathInfo } from './layering.js';

const info = (path: string, narSize: number, references: string[] = []): StorePathInfo => ({ path, narSize, references });

test('a closure within the budget: one layer per store path', () => {
  assert.deepEqual(layerGroups([info('/s/b', 1), info('/s/a', 1)], 3), [['/s/a'], ['/s/b']]);
});

test('over the budget: the most referenced and largest paths get their own layers, the rest share one', () => {
  const closure = [
    info('/s/libc', 100),
    info('/s/big', 1000),
    info('/s/x', 10, ['/s/libc']),
    info('/s/y', 10, ['/s/libc']),
    info('/s/z', 10, ['/s/libc']),
  ];
  const groups = layerGroups(closure, 3);
  assert.equal(groups.length, 3);
  assert.deepEqual(groups, [['/s/big'], ['/s/libc'], ['/s/x', '/s/y', '/s/z']]);
  assert.deepEqual(groups.flat().sort(), closure.map((p) => p.path).sort());
});
