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

test('weights: a holder takes its weight of the limit, the next waits until it fits, a waiter that aborts leaves', async () => {
  const semaphore = new Semaphore(10);
  const order: string[] = [];
  let releaseA!: () => void;
  const a = semaphore.run(() => new Promise<void>((resolve) => (releaseA = () => (order.push('a done'), resolve()))), { weight: 6 });
  const leaving = new AbortController();
  const b = semaphore.run(async () => void order.push('b ran'), { weight: 5, signal: leaving.signal });
  const c = semaphore.run(async () => void order.push('c ran'), { weight: 5 });
  await delay(5);
  assert.deepEqual(order, [], 'b and c wait while a holds 6 of 10');
  assert.equal(semaphore.queued, 2);
  leaving.abort(new Error('client left'));
  await assert.rejects(b, /client left/);
  assert.equal(semaphore.queued, 1);
  releaseA();
  await Promise.all([a, c]);
  assert.deepEqual(order, ['a done', 'c ran']);
  await assert.rejects(semaphore.run(async () => undefined, { weight: 11 }), RangeError);
});
