import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { ContentStore } from './store.js';
import { collectGarbage, startPeriodicGc } from './gc.js';
import { FsBackend } from '../storage/fs.js';
import type { StorageBackend } from '../storage/backend.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';

const HOUR = 3600 * 1000;
const LATER = () => Date.now() + 2 * HOUR; // every object written so far is past a one-hour grace

async function withStore(fn: (store: ContentStore, dir: string) => Promise<void>, wrap?: (backend: StorageBackend) => StorageBackend) {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-gc-'));
  try {
    const backend = new FsBackend(dir);
    await fn(new ContentStore(wrap ? wrap(backend) : backend, { pointerTTLms: 24 * HOUR }), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function blob(store: ContentStore, text: string): Promise<Descriptor> {
  const { digest, size } = await store.putBlobBytes(Buffer.from(text));
  return { mediaType: MediaType.ociLayerGzip, digest, size };
}

/** An image manifest over the given layers, with a config of its own. */
async function image(store: ContentStore, name: string, layers: Descriptor[], extra: Record<string, unknown> = {}): Promise<Descriptor> {
  const config = { ...(await blob(store, `config of ${name}`)), mediaType: MediaType.ociConfig };
  const manifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers, ...extra };
  return store.putManifest(Buffer.from(JSON.stringify(manifest)), MediaType.ociManifest);
}

/** Everything an image manifest names, read back from the store. */
async function parts(store: ContentStore, manifest: Descriptor): Promise<string[]> {
  const m = JSON.parse((await store.getManifest(manifest.digest))!.bytes.toString()) as { config: Descriptor; layers: Descriptor[] };
  return [m.config.digest, ...m.layers.map((l) => l.digest)];
}

/** A pointer as setPointer writes it, but made `ageMs` ago. */
async function oldPointer(store: ContentStore, service: string, key: string, descriptor: Descriptor, ageMs: number): Promise<void> {
  const pointer = { descriptor, created: new Date(Date.now() - ageMs).toISOString() };
  await store.backend.createIfAbsent(ContentStore.pointerName(service, key), Readable.from([Buffer.from(JSON.stringify(pointer))]));
}

async function names(store: ContentStore, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const { name } of store.list(prefix)) out.push(name);
  return out;
}

const blobExists = async (store: ContentStore, digest: string) => (await store.statBlob(digest)) !== undefined;
const manifestExists = async (store: ContentStore, digest: string) => (await store.backend.stat(ContentStore.manifestName(digest))) !== undefined;

/** Sets the modification time (the fs backend's creation time) of every file under dir. */
async function age(dir: string, ms: number): Promise<void> {
  const when = new Date(Date.now() - ms);
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) await utimes(path.join(entry.parentPath, entry.name), when, when);
  }
}

test('expired pointers disappear with their unreachable content; a blob shared with a fresh image survives', () =>
  withStore(async (store) => {
    const shared = await blob(store, 'shared base layer');
    const oldOnly = await blob(store, 'layer only the old image has');
    const old = await image(store, 'old', [shared, oldOnly]);
    const fresh = await image(store, 'fresh', [shared, await blob(store, 'fresh top layer')]);
    await oldPointer(store, 'test', 'old', old, 25 * HOUR);
    await store.setPointer('test', 'fresh', fresh);
    const oldParts = await parts(store, old);
    const freshParts = await parts(store, fresh);

    const report = await collectGarbage(store, { now: LATER(), graceMs: HOUR });

    assert.equal(report.pointersExpired, 1);
    assert.equal(report.pointersLive, 1);
    assert.deepEqual(await names(store, 'pointers/'), [ContentStore.pointerName('test', 'fresh')]);
    assert.equal(await manifestExists(store, old.digest), false);
    assert.equal(await store.getManifest(old.digest), undefined, 'not served from memory either');
    assert.equal(await blobExists(store, oldOnly.digest), false);
    assert.equal(await blobExists(store, oldParts[0]!), false, 'the old config');
    assert.equal(await manifestExists(store, fresh.digest), true);
    for (const digest of freshParts) assert.equal(await blobExists(store, digest), true, digest);
    assert.equal(await blobExists(store, shared.digest), true);
    assert.equal(report.manifestsDeleted, 1);
    assert.equal(report.blobsDeleted, 2);
    assert.equal(report.blobsKept, 3);
    assert.ok(report.bytesFreed > 0);
  }));

test("an index keeps its children, a referrer its subject; children missing from the store are skipped", () =>
  withStore(async (store) => {
    const amd64 = await image(store, 'amd64', [await blob(store, 'amd64 layer')]);
    const arm64 = await image(store, 'arm64', [await blob(store, 'arm64 layer')]);
    const absent = { mediaType: MediaType.ociManifest, digest: `sha256:${'a'.repeat(64)}`, size: 100 }; // a mirror child not fetched yet
    const nested = await store.putManifest(
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [arm64] })),
      MediaType.ociIndex,
    );
    const index = await store.putManifest(
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [amd64, nested, absent] })),
      MediaType.ociIndex,
    );
    const signed = await image(store, 'signed', [await blob(store, 'signed layer')]);
    const signature = await image(store, 'signature', [await blob(store, 'signature payload')], { subject: signed });
    await store.setPointer('test', 'index', index);
    await store.setPointer('test', 'signature', signature);

    const report = await collectGarbage(store, { now: LATER(), graceMs: HOUR });

    assert.equal(report.manifestsDeleted, 0);
    assert.equal(report.blobsDeleted, 0);
    assert.equal(report.manifestsMissing, 1);
    for (const m of [index, nested, amd64, arm64, signature, signed]) assert.equal(await manifestExists(store, m.digest), true);
    for (const m of [amd64, arm64, signature, signed]) {
      for (const digest of await parts(store, m)) assert.equal(await blobExists(store, digest), true);
    }
  }));

test('unreachable objects younger than the grace period survive; older ones go', () =>
  withStore(async (store) => {
    // A random image: no pointer, pulled by digest moments after it was made.
    const random = await image(store, 'random', [await blob(store, 'random layer')]);
    const young = await collectGarbage(store, { now: Date.now() + 1000, graceMs: HOUR });
    assert.equal(young.manifestsDeleted + young.blobsDeleted, 0);
    assert.equal(young.keptByGrace, 1);
    assert.equal(await manifestExists(store, random.digest), true);

    const old = await collectGarbage(store, { now: LATER(), graceMs: HOUR });
    assert.equal(old.manifestsDeleted, 1);
    assert.equal(old.blobsDeleted, 2);
    assert.deepEqual(await names(store), []);
  }));

test('a young manifest keeps old blobs it reuses', () =>
  withStore(async (store, dir) => {
    const base = await blob(store, 'base layer made long ago');
    await age(dir, 2 * HOUR);
    const rebuilt = await image(store, 'rebuilt', [base]);
    const report = await collectGarbage(store, { graceMs: HOUR });
    assert.equal(report.blobsDeleted, 0);
    assert.equal(await blobExists(store, base.digest), true);
    assert.equal(await manifestExists(store, rebuilt.digest), true);
  }));

/**
 * A backend wrapper whose `list` runs the armed hook once, at the first listing under
 * `prefix`: before listing (`before`), or after taking the whole listing and before
 * handing it over (`after-listing`), so the run holds a listing older than the hook's writes.
 */
function listHook(prefix: string, when: 'before' | 'after-listing') {
  let hook: (() => Promise<void>) | undefined;
  const fire = async () => {
    const h = hook;
    hook = undefined;
    await h?.();
  };
  const wrap = (backend: StorageBackend): StorageBackend =>
    new Proxy(backend, {
      get(target, prop, receiver) {
        if (prop === 'list') {
          return (listed: string) =>
            (async function* () {
              if (!listed.startsWith(prefix) || !hook) return yield* target.list(listed);
              if (when === 'before') {
                await fire();
                return yield* target.list(listed);
              }
              const items = [];
              for await (const item of target.list(listed)) items.push(item);
              await fire();
              yield* items;
            })();
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  return {
    wrap,
    arm: (h: () => Promise<void>) => (hook = h),
    fired: () => hook === undefined,
  };
}

test('a pointer written during the run (a rebuild reusing old objects) protects them', async () => {
  // The hook runs when the run first lists manifests: after it has read the pointers.
  const hooked = listHook('manifests/', 'before');
  await withStore(async (store, dir) => {
    const layer = await blob(store, 'deterministic layer');
    const built = await image(store, 'deterministic', [layer]);
    await oldPointer(store, 'flatten', 'key', built, 25 * HOUR);
    await age(dir, 2 * HOUR);
    hooked.arm(() => store.setPointer('flatten', 'key', built));

    const report = await collectGarbage(store, { graceMs: HOUR });

    assert.ok(hooked.fired(), 'the pointer was written during the run');
    assert.equal(report.pointersExpired, 1);
    assert.equal(await manifestExists(store, built.digest), true);
    for (const digest of await parts(store, built)) assert.equal(await blobExists(store, digest), true);
    assert.ok((await store.getPointer('flatten', 'key')) !== undefined, 'the new pointer was not taken for the expired one');
  }, hooked.wrap);
});

test('an old blob reused by a rebuild after the last pointer re-read is kept (the rebuild touched it)', async () => {
  // The hook runs when the run lists blobs for the sweep, after its last look at pointers.
  const hooked = listHook('blobs/', 'after-listing');
  await withStore(async (store, dir) => {
    const layers = [await blob(store, 'layer one'), await blob(store, 'layer two')];
    const built = await image(store, 'deterministic', layers);
    await oldPointer(store, 'flatten', 'key', built, 25 * HOUR);
    await age(dir, 2 * HOUR);
    // The rebuild writes the same bytes again (finding them in place) and then its pointer,
    // while the sweep is already walking the blobs.
    hooked.arm(async () => {
      const rebuilt = await image(store, 'deterministic', [await blob(store, 'layer one'), await blob(store, 'layer two')]);
      assert.equal(rebuilt.digest, built.digest);
      await store.setPointer('flatten', 'key', rebuilt);
    });

    const report = await collectGarbage(store, { graceMs: HOUR });

    assert.ok(hooked.fired(), 'the rebuild ran during the sweep');
    assert.equal(report.pointersExpired, 1);
    for (const digest of await parts(store, built)) assert.equal(await blobExists(store, digest), true, `${digest} survived`);
    // Config and both layers were old, unreachable when listed, and touched by the rebuild.
    assert.equal(report.keptAsReused, 3);
    assert.equal(report.blobsDeleted, 0);
    assert.equal(await manifestExists(store, built.digest), true);
  }, hooked.wrap);
});

test('old tmp uploads are deleted, young ones kept; other prefixes are never touched', () =>
  withStore(async (store) => {
    await store.backend.createIfAbsent('tmp/crashed-upload', Readable.from([Buffer.from('partial')]));
    await store.backend.createIfAbsent('tasks/pending/t1.json', Readable.from([Buffer.from('{"due":0}')]));
    await store.backend.createIfAbsent('pointersX/not-a-pointer', Readable.from([Buffer.from('x')]));
    await store.backend.createIfAbsent('manifests/sha256/not-a-digest', Readable.from([Buffer.from('x')]));

    const young = await collectGarbage(store, { now: Date.now() + 1000, graceMs: HOUR });
    assert.equal(young.tmpDeleted, 0);
    assert.equal(young.tmpKept, 1);

    const old = await collectGarbage(store, { now: Date.now() + 48 * HOUR, graceMs: HOUR });
    assert.equal(old.tmpDeleted, 1);
    assert.equal(old.bytesFreed, 'partial'.length);
    assert.deepEqual((await names(store)).sort(), ['manifests/sha256/not-a-digest', 'pointersX/not-a-pointer', 'tasks/pending/t1.json']);
  }));

test('a dry run reports what it would delete and deletes nothing', () =>
  withStore(async (store) => {
    const old = await image(store, 'old', [await blob(store, 'layer')]);
    await oldPointer(store, 'test', 'old', old, 25 * HOUR);
    const before = await names(store);
    const report = await collectGarbage(store, { now: LATER(), graceMs: HOUR, dryRun: true });
    assert.deepEqual([report.pointersExpired, report.manifestsDeleted, report.blobsDeleted], [1, 1, 2]);
    assert.deepEqual(await names(store), before);
  }));

test('a manifest that cannot be read stops the run before anything is deleted', async () => {
  const failing = (backend: StorageBackend): StorageBackend =>
    new Proxy(backend, {
      get(target, prop, receiver) {
        if (prop === 'read') {
          return (name: string, range?: { start: number; end: number }) =>
            name.startsWith('manifests/') ? Promise.reject(new Error('backend unavailable')) : target.read(name, range);
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  await withStore(async (store, dir) => {
    const kept = await image(store, 'kept', [await blob(store, 'kept layer')]);
    await store.setPointer('test', 'kept', kept);
    // A fresh store: nothing in memory, so marking must read the backend.
    const cold = new ContentStore(failing(new FsBackend(dir)));
    await assert.rejects(collectGarbage(cold, { now: LATER(), graceMs: HOUR }), /backend unavailable/);
    for (const digest of await parts(store, kept)) assert.equal(await blobExists(store, digest), true);
  });
});

test('the periodic run logs a line per run and stops with the server', () =>
  withStore(async (store) => {
    const lines: Array<{ message: string; gc?: unknown }> = [];
    const log = pino({ messageKey: 'message' }, { write: (line: string) => void lines.push(JSON.parse(line) as { message: string }) });
    const periodic = startPeriodicGc(store, { intervalMs: 20, graceMs: HOUR, log });
    // A tick that comes while a run is still going logs that it skipped: look at the runs.
    const runs = () => lines.filter((line) => line.gc);
    for (let i = 0; i < 500 && runs().length < 2; i++) await sleep(20);
    await periodic.stop();
    assert.ok(runs().length >= 2, `${runs().length} runs logged`);
    assert.match(runs()[0]!.message, /^garbage collection: 0 manifests, 0 blobs, 0 pointers deleted$/);
  }));

test('build records, logs and leases go after their lifetimes; live ones stay', () =>
  withStore(async (store) => {
    const put = (name: string, body: string) => store.backend.createIfAbsent(name, Readable.from([Buffer.from(body)]));
    const id = 'a'.repeat(32);
    const waiting = 'b'.repeat(32);
    const failure = { state: 'failed', attempt: 'x', label: 'o/r@1234567', started: new Date().toISOString(), finished: new Date().toISOString() };
    await put(`builds/${id}.failed.json`, JSON.stringify(failure));
    await put(`builds/${id}.log`, 'the log');
    await put(`builds/${id}.progress`, 'step 1/2');
    await put(`builds/${id}.json`, JSON.stringify({ state: 'running', attempt: 'y', label: 'o/r@1234567', started: new Date().toISOString() }));
    // Delayed work: due in two days, so its lease has not begun.
    const due = new Date(Date.now() + 48 * HOUR).toISOString();
    await put(`builds/${waiting}.json`, JSON.stringify({ state: 'running', attempt: 'z', label: 'wait/x:1h', started: new Date().toISOString(), due }));
    await put('builds/sources/k.json', '{"dockerfile":null,"commitTime":0}');
    await put('builds/cloud/kaniko-1/source.tar.gz', 'tgz');
    await put(`leases/${'c'.repeat(64)}/000000000001`, '{}');
    const all = ['builds/cloud/kaniko-1/source.tar.gz', `builds/${id}.failed.json`, `builds/${id}.json`, `builds/${id}.log`, `builds/${id}.progress`, `builds/${waiting}.json`, 'builds/sources/k.json', `leases/${'c'.repeat(64)}/000000000001`];

    // A minute on: the failure (TTL 10 min), the lease (30 s + grace 1 h) and the rest stay.
    const soon = await collectGarbage(store, { now: Date.now() + 60_000, graceMs: HOUR, leaseTtlMs: 30_000, buildFailureTtlMs: 600_000 });
    assert.equal(soon.buildObjectsDeleted + soon.leasesDeleted, 0);
    assert.deepEqual([...(await names(store, 'builds/')), ...(await names(store, 'leases/'))].sort(), all.sort());

    // Past the failure TTL but within the grace: only the failure goes.
    const later = await collectGarbage(store, { now: Date.now() + 20 * 60_000, graceMs: HOUR, leaseTtlMs: 30_000, buildFailureTtlMs: 600_000 });
    assert.equal(later.buildObjectsDeleted, 1);
    assert.equal((await names(store, `builds/${id}.failed`)).length, 0);

    // Two hours on: the dead attempt and lease go; logs, sources and Cloud Build leftovers
    // live for the pointer TTL (24 h here), the delayed attempt until its due time.
    const hours = await collectGarbage(store, { now: Date.now() + 2 * HOUR, graceMs: HOUR, leaseTtlMs: 30_000, buildFailureTtlMs: 600_000 });
    assert.equal(hours.buildObjectsDeleted, 1);
    assert.equal(hours.leasesDeleted, 1);
    assert.deepEqual((await names(store, 'builds/')).sort(), ['builds/cloud/kaniko-1/source.tar.gz', `builds/${id}.log`, `builds/${id}.progress`, `builds/${waiting}.json`, 'builds/sources/k.json'].sort());

    // Past the pointer TTL and the delayed attempt's due time plus grace: nothing is left.
    const days = await collectGarbage(store, { now: Date.now() + 50 * HOUR, graceMs: HOUR, leaseTtlMs: 30_000, buildFailureTtlMs: 600_000 });
    assert.equal(days.buildObjectsDeleted, 5);
    assert.deepEqual([...(await names(store, 'builds/')), ...(await names(store, 'leases/'))], []);
  }));
