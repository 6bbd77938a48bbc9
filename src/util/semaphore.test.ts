import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { Semaphore } from './semaphore.js';

test('no more than the limit run at once, and everyone runs', async () => {
  const semaphore = new Semaphore(2);
  let running = 0;
  let most = 0;
  const order: number[] = [];
  await Promise.all(
    [20, 5, 10, 1, 3].map((ms, i) =>
      semaphore.run(async () => {
        most = Math.max(most, ++running);
        await delay(ms);
        running--;
        order.push(i);
      }),
    ),
  );
  assert.equal(most, 2);
  assert.deepEqual([...order].sort(), [0, 1, 2, 3, 4]);
});

test('a failing holder releases its slot', async () => {
  const semaphore = new Semaphore(1);
  await assert.rejects(semaphore.run(async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await semaphore.run(async () => 'next'), 'next');
});
