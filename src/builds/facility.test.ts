import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ContentStore } from '../content/store.js';
import { FsBackend } from '../storage/fs.js';
import { EmbeddedTaskQueue } from '../tasks/embedded.js';
import { RegistryError } from '../registry/errors.js';
import { MediaType } from '../oci/mediatypes.js';
import { BuildFacility, type SlowJob } from './facility.js';

const log = pino({ level: 'silent' });
const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

async function setup(holdMs: number) {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-facility-'));
  const store = new ContentStore(new FsBackend(dir));
  const tasks = new EmbeddedTaskQueue(store.backend, { log });
  const facility = new BuildFacility({ store, tasks, holdMs, failureTtlMs: 60_000, leaseTtlMs: 600_000, log });
  await tasks.start();
  cleanup.push(async () => {
    await tasks.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return { store, facility };
}

const job = (key: string): SlowJob => ({ kind: 'test', service: 'test', key, label: `thing@${key}`, payload: { key } });

async function answer(promise: Promise<unknown>): Promise<RegistryError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof RegistryError) return err;
    throw err;
  }
  throw new Error('expected a registry error');
}

test('a job that fails at once: concurrent and later pulls all get its failure, and it runs once', async () => {
  const { facility } = await setup(10_000);
  let runs = 0;
  facility.register('test', async (_payload, context) => {
    runs++;
    context.line('compiling');
    context.line('error: the thing is broken');
    throw new RegistryError('MANIFEST_UNKNOWN', 'it does not build', { status: 422 });
  });
  const errors = await Promise.all(Array.from({ length: 6 }, () => answer(facility.obtain(job('a'), { log }))));
  errors.push(await answer(facility.obtain(job('a'), { log })));
  for (const error of errors) {
    assert.equal(error.status, 422);
    assert.equal(error.code, 'MANIFEST_UNKNOWN');
    assert.match(error.message, /^build of thing@a failed: it does not build\nlast lines of the log:\ncompiling\nerror: the thing is broken\nlog: \/_builds\/[0-9a-f]{32}\/log$/);
  }
  assert.equal(runs, 1);
});

test('a job slower than the hold: pulls answer building with Retry-After and start nothing; then the image', async (t) => {
  const { store, facility } = await setup(20);
  let runs = 0;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  facility.register('test', async (_payload, context) => {
    runs++;
    context.progress('step 2/3');
    started();
    await released;
    return store.putManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: {}, layers: [] })), MediaType.ociManifest);
  });
  // The queue's timers are unref'd (a server's idle queue must not keep it alive): this
  // test's own timer keeps the loop running while it waits for the job.
  const keepAlive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(keepAlive));
  const first = await answer(facility.obtain(job('b'), { log, baseUrl: 'http://kontain.test' }));
  assert.equal(first.code, 'MANIFEST_UNKNOWN');
  assert.equal(first.status, 404);
  assert.ok(Number(first.headers['Retry-After']) >= 1);
  await running;
  const second = await answer(facility.obtain(job('b'), { log, baseUrl: 'http://kontain.test' }));
  assert.match(second.message, /^building thing@b \(step 2\/3\), pull again in a few seconds; log: http:\/\/kontain\.test\/_builds\/[0-9a-f]{32}\/log$/);
  release();
  let descriptor;
  for (let i = 0; i < 200 && !descriptor; i++) {
    descriptor = await facility.obtain(job('b'), { log }).catch(() => undefined);
    if (!descriptor) await new Promise((r) => setTimeout(r, 25));
  }
  assert.ok(descriptor, 'the image came');
  assert.equal(runs, 1);
  assert.ok(await store.getManifest(descriptor.digest));
});

const emptyImage = (store: ContentStore) => store.putManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: {}, layers: [] })), MediaType.ociManifest);

async function eventually<T>(fn: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const value = await fn().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('never came');
}

test('delayed work: pulls before its due time are told when, at once, and start nothing; it runs once, when due', async (t) => {
  const { store, facility } = await setup(10_000);
  const keepAlive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(keepAlive));
  const ran: number[] = [];
  facility.register('test', async () => {
    ran.push(Date.now());
    return emptyImage(store);
  });
  const asked = Date.now();
  const delayed = { ...job('d'), delaySeconds: 1 };
  const answers = await Promise.all([1, 2, 3].map(() => answer(facility.obtain(delayed, { log }))));
  for (const a of answers) {
    assert.equal(a.status, 404);
    assert.match(a.message, /^thing@d is not ready yet: it will be ready at \S+ \(in 1 s\); pull again then$/);
    assert.equal(a.headers['Retry-After'], '1');
  }
  const image = await eventually(() => facility.obtain(delayed, { log }));
  assert.ok(await store.getManifest(image.digest));
  assert.equal(ran.length, 1);
  assert.ok(ran[0]! >= asked + 1000, 'not before its due time');
});

test('delayed work whose task was lost (a crash after the record) runs at once on the next pull after its lease', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-facility-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const store = new ContentStore(new FsBackend(dir));
  const tasks = new EmbeddedTaskQueue(store.backend, { log });
  const facility = new BuildFacility({ store, tasks, holdMs: 10_000, failureTtlMs: 60_000, leaseTtlMs: 50, log });
  await tasks.start();
  cleanup.push(() => tasks.stop());
  facility.register('test', async () => emptyImage(store));
  // The record as the dead process wrote it, due a moment ago; its task was never enqueued.
  const { BuildRecords } = await import('../content/build-records.js');
  const past = new Date(Date.now() - 1000).toISOString();
  await new BuildRecords(store.backend).create(BuildFacility.idOf(job('lost')), { state: 'running', attempt: 'dead', label: 'thing@lost', started: past, due: past });
  await new Promise((r) => setTimeout(r, 100));
  // Not a new wait of its whole delay: the image, within this pull's hold.
  const image = await facility.obtain({ ...job('lost'), delaySeconds: 3600 }, { log });
  assert.ok(await store.getManifest(image.digest));
});

test('work handed on to later tasks (a build being polled) keeps one log, answers building meanwhile, then the image', async (t) => {
  const { store, facility } = await setup(20);
  const keepAlive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(keepAlive));
  const seen: unknown[] = [];
  facility.register('test', async (_payload, context) => {
    seen.push(context.resume);
    const round = (context.resume as number | undefined) ?? 0;
    context.line(`look ${round}`);
    if (round < 2) return { again: { afterSeconds: 0.2, state: round + 1 } };
    return emptyImage(store);
  });
  const first = await answer(facility.obtain(job('p'), { log }));
  assert.match(first.message, /^building thing@p/);
  const image = await eventually(() => facility.obtain(job('p'), { log }));
  assert.ok(await store.getManifest(image.digest));
  assert.deepEqual(seen, [undefined, 1, 2]);
  const text = await facility.logText(BuildFacility.idOf(job('p')));
  assert.match(text ?? '', /look 0\nlook 1\nlook 2\nkontain: built sha256:/);
});

test("a build task that arrives before its host's module is loaded here gets its runner from the kind's loader", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-facility-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const store = new ContentStore(new FsBackend(dir));
  const image = () => store.putManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: {}, layers: [] })), MediaType.ociManifest);
  // An instance starts the build (its queue holds the task) and goes away before running it.
  const gone = new BuildFacility({ store, tasks: new EmbeddedTaskQueue(store.backend, { log }), holdMs: 0, failureTtlMs: 60_000, leaseTtlMs: 600_000, log });
  gone.register('test', image);
  assert.equal((await answer(gone.obtain(job('d'), { log }))).code, 'MANIFEST_UNKNOWN');

  // This instance has not loaded the host whose module registers the runner: only its loader.
  const tasks = new EmbeddedTaskQueue(store.backend, { log });
  const here = new BuildFacility({ store, tasks, holdMs: 10_000, failureTtlMs: 60_000, leaseTtlMs: 600_000, log });
  let loads = 0;
  here.registerLoader('test', async () => {
    loads++;
    here.register('test', image);
  });
  const keepAlive = setInterval(() => undefined, 1000);
  t.after(async () => {
    clearInterval(keepAlive);
    await tasks.stop();
  });
  await tasks.start();
  let descriptor;
  for (let i = 0; i < 400 && !descriptor; i++) {
    descriptor = await here.obtain(job('d'), { log }).catch((err: RegistryError) => assert.equal(err.code, 'MANIFEST_UNKNOWN', err.message));
    if (!descriptor) await new Promise((r) => setTimeout(r, 25));
  }
  assert.ok(descriptor, 'the resumed task built the image');
  assert.ok(await store.getManifest(descriptor.digest));
  assert.equal(loads, 1);
});
