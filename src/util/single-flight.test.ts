import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleFlight } from './single-flight.js';

/** Work that resolves when told, and reports whether its signal aborted. */
function controllableWork() {
  let finish!: (value: string) => void;
  let seen: AbortSignal | undefined;
  let runs = 0;
  const work = (signal: AbortSignal) => {
    runs++;
    seen = signal;
    return new Promise<string>((resolve) => (finish = resolve));
  };
  return { work, finish: (v: string) => finish(v), aborted: () => seen?.aborted ?? false, runs: () => runs };
}

test('one run for concurrent callers; the work is cancelled only when every caller has left', async () => {
  const flights = new SingleFlight<string>();
  const w = controllableWork();
  const a = new AbortController();
  const b = new AbortController();
  const first = flights.run('k', w.work, a.signal);
  const second = flights.run('k', w.work, b.signal);
  assert.equal(w.runs(), 1);
  a.abort(new Error('a left'));
  await assert.rejects(first, /a left/);
  assert.equal(w.aborted(), false, 'b still waits');
  b.abort(new Error('b left'));
  await assert.rejects(second, /b left/);
  assert.equal(w.aborted(), true);
  // A new caller starts over instead of joining the cancelled run.
  const w2 = controllableWork();
  const third = flights.run('k', w2.work);
  assert.equal(w2.runs(), 1);
  w2.finish('fresh');
  assert.equal(await third, 'fresh');
});

test('a caller without a signal keeps the work alive', async () => {
  const flights = new SingleFlight<string>();
  const w = controllableWork();
  const a = new AbortController();
  const leaving = flights.run('k', w.work, a.signal);
  const staying = flights.run('k', w.work);
  a.abort(new Error('gone'));
  await assert.rejects(leaving, /gone/);
  assert.equal(w.aborted(), false);
  w.finish('done');
  assert.equal(await staying, 'done');
});
