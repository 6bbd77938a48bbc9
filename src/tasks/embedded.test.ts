import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { FsBackend } from '../storage/fs.js';
import { EmbeddedTaskQueue, PENDING_PREFIX } from './embedded.js';

const log = pino({ level: 'silent' });
const dirs: string[] = [];
const queues: EmbeddedTaskQueue[] = [];
after(async () => {
  for (const q of queues) await q.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function backend(): Promise<FsBackend> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-tasks-'));
  dirs.push(dir);
  return new FsBackend(dir);
}

function queue(b: FsBackend, options: Partial<ConstructorParameters<typeof EmbeddedTaskQueue>[1]> = {}): EmbeddedTaskQueue {
  const q = new EmbeddedTaskQueue(b, { log, ...options });
  queues.push(q);
  return q;
}

async function pendingObjects(b: FsBackend): Promise<string[]> {
  const names: string[] = [];
  for await (const { name } of b.list(PENDING_PREFIX)) names.push(name);
  return names;
}

/** Polls until `check` holds, at most `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a task runs after its delay with its payload, then its object is gone', async () => {
  const b = await backend();
  const q = queue(b);
  const seen: Array<{ payload: unknown; at: number }> = [];
  q.handle('echo', async (payload) => void seen.push({ payload, at: Date.now() }));
  await q.start();
  const enqueued = Date.now();
  // Delays long enough that a loaded machine's enqueue (a fsynced write) cannot outlast them.
  assert.deepEqual(await q.enqueue('echo', { n: 1 }, 1), { created: true });
  assert.equal((await pendingObjects(b)).length, 1, 'persisted before enqueue returns');
  assert.equal(q.pending(), 1);
  await until(() => seen.length === 1);
  assert.deepEqual(seen[0]!.payload, { n: 1 });
  assert.ok(seen[0]!.at - enqueued >= 990, `ran after ${seen[0]!.at - enqueued} ms`);
  await until(async () => (await pendingObjects(b)).length === 0);
  assert.equal(q.pending(), 0);
});

test('the same dedupe key twice makes one task', async () => {
  const b = await backend();
  const q = queue(b);
  let runs = 0;
  q.handle('once', async () => void runs++);
  await q.start();
  assert.deepEqual(await q.enqueue('once', null, 1.5, { dedupeKey: 'k' }), { created: true });
  assert.deepEqual(await q.enqueue('once', null, 1.5, { dedupeKey: 'k' }), { created: false });
  assert.equal((await pendingObjects(b)).length, 1);
  await until(() => runs === 1);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(runs, 1);
});

test('tasks survive a stop: overdue ones run at once on the next start, future ones on time', async () => {
  const b = await backend();
  const first = queue(b);
  first.handle('t', async () => assert.fail('the stopped queue must not run tasks'));
  await first.start();
  await first.enqueue('t', { which: 'overdue' }, 0.1);
  const futureDue = Date.now() + 600;
  await first.enqueue('t', { which: 'future' }, 0.6);
  await first.stop();
  await new Promise((r) => setTimeout(r, 200)); // the first is now overdue

  const second = queue(b);
  const seen: Array<{ which: string; at: number }> = [];
  second.handle('t', async (payload) => void seen.push({ which: (payload as { which: string }).which, at: Date.now() }));
  const started = Date.now();
  await second.start();
  await until(() => seen.length === 2);
  assert.equal(seen[0]!.which, 'overdue');
  // At once: before the next task's due time, not after a timer of its own (no latency bound: the machine may be busy).
  assert.ok(seen[0]!.at < futureDue, 'the overdue task waited for the future one');
  assert.equal(seen[1]!.which, 'future');
  assert.ok(seen[1]!.at - started >= 250, 'future task kept its due time');
  await until(async () => (await pendingObjects(b)).length === 0);
});

test('a failing handler is retried with backoff, then dropped after maxAttempts', async () => {
  const b = await backend();
  const q = queue(b, { maxAttempts: 3, baseBackoffMs: 50 });
  const attempts: number[] = [];
  q.handle('flaky', async () => {
    attempts.push(Date.now());
    throw new Error('not today');
  });
  await q.start();
  await q.enqueue('flaky', null, 0);
  await until(() => attempts.length === 3);
  await until(async () => (await pendingObjects(b)).length === 0);
  assert.ok(attempts[1]! - attempts[0]! >= 45, 'first backoff');
  assert.ok(attempts[2]! - attempts[1]! >= 95, 'backoff doubles');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(attempts.length, 3, 'no fourth attempt');
});

test('a task whose handler succeeds on retry is deleted; one enqueued while stopped waits for start', async () => {
  const b = await backend();
  const q = queue(b, { baseBackoffMs: 20 });
  let calls = 0;
  q.handle('second-time', async () => {
    if (++calls === 1) throw new Error('transient');
  });
  await q.enqueue('second-time', null, 0); // not started yet
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls, 0);
  await q.start();
  await until(() => calls === 2);
  await until(async () => (await pendingObjects(b)).length === 0);
});
