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
