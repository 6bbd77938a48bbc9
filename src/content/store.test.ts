import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ContentStore, DigestMismatch } from './store.js';
import { FsBackend } from '../storage/fs.js';
import { sha256Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';

async function withStore(fn: (store: ContentStore, dir: string) => Promise<void>, ttlMs?: number) {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-content-'));
  try {
    await fn(new ContentStore(new FsBackend(dir), { pointerTTLms: ttlMs }), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('putBlob files bytes under their sha256 and they read back', () =>
  withStore(async (store) => {
    const data = Buffer.from('hello blob');
    const written = await store.putBlob(Readable.from([data]));
    assert.equal(written.digest, sha256Digest(data));
    assert.equal(written.size, data.length);
    assert.equal((await store.statBlob(written.digest))?.size, data.length);
    const chunks: Buffer[] = [];
    for await (const c of await store.readBlob(written.digest)) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), data);
  }));

test('putBlob with a wrong expected digest stores nothing', () =>
  withStore(async (store) => {
    const expected = sha256Digest('something else');
    await assert.rejects(store.putBlob(Readable.from([Buffer.from('actual bytes')]), expected), DigestMismatch);
    assert.equal(await store.statBlob(expected), undefined);
    assert.equal(await store.statBlob(sha256Digest('actual bytes')), undefined);
    const names = [];
    for await (const entry of store.list('')) names.push(entry.name);
    assert.deepEqual(names, []);
  }));

test('manifests keep their exact bytes and media type, also after a restart (read through)', () =>
  withStore(async (store, dir) => {
    const bytes = Buffer.from('{"schemaVersion":2,  "weird":"spacing"}');
    const descriptor = await store.putManifest(bytes, MediaType.ociManifest);
    const fresh = new ContentStore(new FsBackend(dir));
    const read = await fresh.getManifest(descriptor.digest);
    assert.deepEqual(read?.bytes, bytes);
    assert.equal(read?.mediaType, MediaType.ociManifest);
  }));

test('concurrent requests for the same missing image build it once', () =>
  withStore(async (store) => {
    let builds = 0;
    const build = async () => {
      builds++;
      await sleep(50);
      return store.putManifest(Buffer.from('{"schemaVersion":2}'), MediaType.ociManifest);
    };
    const results = await Promise.all(Array.from({ length: 10 }, () => store.cached('test', 'key', build)));
    assert.equal(builds, 1);
    assert.equal(new Set(results.map((r) => r.digest)).size, 1);
    await store.cached('test', 'key', build);
    assert.equal(builds, 1, 'a later request is served from the pointer');
  }));

test('an expired pointer is not used', () =>
  withStore(async (store) => {
    let builds = 0;
    const build = async () => {
      builds++;
      return store.putManifest(Buffer.from(`{"n":${builds}}`), MediaType.ociManifest);
    };
    await store.cached('test', 'k', build);
    await sleep(30);
    await store.cached('test', 'k', build);
    assert.equal(builds, 2);
  }, 10));

test('pointer names: short keys stay readable, the longest valid keys fit a file name and a GCS object name', () =>
  withStore(async (store) => {
    assert.equal(ContentStore.pointerName('mirror', 'docker.io/library/busybox:latest'), 'pointers/mirror/docker.io%2Flibrary%2Fbusybox%3Alatest.json');
    // A 253-character registry host, a 255-character repository and a 128-character tag.
    const longest = `${'h'.repeat(63)}.${'o'.repeat(63)}.${'s'.repeat(63)}.${'t'.repeat(61)}:65535/${'r/'.repeat(127)}r:${'T'.repeat(128)}`;
    const otherTag = longest.slice(0, -1) + 'U';
    const name = ContentStore.pointerName('mirror', longest);
    const component = name.split('/').pop()!;
    // 255 bytes per file name, less the fs backend's `.<inode>.meta.json` sidecar suffix.
    assert.ok(Buffer.byteLength(component) + '.18446744073709551615.meta.json'.length <= 255, component);
    assert.ok(Buffer.byteLength(`${'p'.repeat(200)}/${name}`) <= 1024, 'a GCS object name, even under a long prefix');
    assert.notEqual(ContentStore.pointerName('mirror', otherTag), name);
    assert.match(component, /^h{60}=[0-9a-f]{64}\.json$/, 'the readable start of the key, then its hash');

    const descriptor = { mediaType: MediaType.ociManifest, digest: sha256Digest(Buffer.from('x')), size: 1 };
    await store.setPointer('mirror', longest, descriptor);
    const pointer = await store.getPointer('mirror', longest);
    assert.deepEqual(pointer?.descriptor, descriptor);
    assert.equal(pointer?.key, longest, 'the key is kept inside the pointer');
    assert.equal(await store.getPointer('mirror', otherTag), undefined);
    assert.equal(await store.createPointer('mirror', longest, descriptor), false, 'create-if-absent sees the pointer');
  }));
