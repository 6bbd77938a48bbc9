import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { mapConcurrent } from './concurrency.js';

test('results keep item order and no more than the limit run at once', async () => {
  let running = 0;
  let most = 0;
  const out = await mapConcurrent([30, 5, 20, 1, 10], 2, async (ms, i) => {
    most = Math.max(most, ++running);
    await delay(ms);
    running--;
    return `${i}:${ms}`;
  });
  assert.deepEqual(out, ['0:30', '1:5', '2:20', '3:1', '4:10']);
  assert.equal(most, 2);
});

test('a failure stops new calls and is thrown after the running ones end', async () => {
  const started: number[] = [];
  let finished = 0;
  await assert.rejects(
    mapConcurrent([0, 1, 2, 3, 4], 2, async (i) => {
      started.push(i);
      if (i === 0) throw new Error('boom');
      await delay(10);
      finished++;
    }),
    /boom/,
  );
  assert.deepEqual(started, [0, 1]);
  assert.equal(finished, 1);
});

test('an empty list is an empty result', async () => {
  assert.deepEqual(await mapConcurrent([], 3, async () => 1), []);
});
