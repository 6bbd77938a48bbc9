/**
 * The behaviour every StorageBackend must show, as node:test tests. Each backend's test
 * file calls runBackendContract with a factory, so fs and gcs are held to the same rules
 * the content store relies on (create-if-absent, no partial objects, ranges, listing).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import { ObjectNotFound, type StorageBackend } from './backend.js';

export interface BackendUnderTest {
  backend: StorageBackend;
  cleanup(): Promise<void>;
  /** Moves an object's creation time `ms` into the past, behind the backend's back. */
  age(name: string, ms: number): Promise<void>;
}

export function runBackendContract(name: string, makeBackend: () => Promise<BackendUnderTest>): void {
  /** Each test gets a fresh, empty backend. */
  function contractTest(title: string, body: (backend: StorageBackend, under: BackendUnderTest) => Promise<void>): void {
    test(title, async () => {
      const under = await makeBackend();
      const { backend, cleanup } = under;
      try {
        await body(backend, under);
      } finally {
        await cleanup();
      }
    });
  }

  describe(`${name} storage backend contract`, () => {
    contractTest('createIfAbsent then stat and read round-trip bytes, content type and metadata', async (backend) => {
      const bytes = Buffer.from('{"schemaVersion":2}\n');
      const before = Date.now();
      const created = await backend.createIfAbsent('blobs/sha256/abc', Readable.from([bytes]), {
        contentType: 'application/vnd.oci.image.manifest.v1+json',
        metadata: { digest: 'sha256:abc', kind: 'manifest' },
      });
      assert.equal(created, true);
      const info = await backend.stat('blobs/sha256/abc');
      assert.ok(info, 'stat finds the new object');
      assert.equal(info.size, bytes.length);
      assert.equal(info.contentType, 'application/vnd.oci.image.manifest.v1+json');
      assert.deepEqual(info.metadata, { digest: 'sha256:abc', kind: 'manifest' });
      assert.ok(info.created instanceof Date);
      // Loose bounds: filesystem and server clocks have coarse resolution.
      assert.ok(Math.abs(info.created.getTime() - before) < 60_000, `created ${info.created.toISOString()} is about now`);
      assert.deepEqual(await readAll(backend, 'blobs/sha256/abc'), bytes);
    });

    contractTest('touch makes an old object new again without changing it; touching nothing is no error', async (backend, under) => {
      const bytes = Buffer.from('layer bytes');
      await backend.createIfAbsent('blobs/sha256/old', Readable.from([bytes]), { contentType: 'application/octet-stream', metadata: { digest: 'sha256:old' } });
      await under.age('blobs/sha256/old', 3 * 3600_000);
      const aged = await backend.stat('blobs/sha256/old');
      assert.ok(aged && Date.now() - aged.created.getTime() > 2 * 3600_000, 'the object was aged');
      await backend.touch('blobs/sha256/old');
      const touched = await backend.stat('blobs/sha256/old');
      assert.ok(touched && Math.abs(Date.now() - touched.created.getTime()) < 60_000, `touched object is new: ${touched?.created.toISOString()}`);
      assert.equal(touched.size, bytes.length);
      assert.deepEqual(touched.metadata, { digest: 'sha256:old' });
      assert.deepEqual(await readAll(backend, 'blobs/sha256/old'), bytes);
      // Listing sees the same time as stat.
      for await (const { name, info } of backend.list('blobs/')) {
        if (name === 'blobs/sha256/old') assert.equal(info.created.getTime(), touched.created.getTime());
      }
      await backend.touch('blobs/sha256/absent');
      assert.equal(await backend.stat('blobs/sha256/absent'), undefined);
    });

    contractTest('objects written without options get application/octet-stream and no metadata', async (backend) => {
      assert.equal(await backend.createIfAbsent('plain', Readable.from([Buffer.from('x')])), true);
      const info = await backend.stat('plain');
      assert.equal(info?.contentType, 'application/octet-stream');
      assert.deepEqual(info?.metadata, {});
    });

    contractTest('an empty object round-trips', async (backend) => {
      assert.equal(await backend.createIfAbsent('empty', Readable.from([])), true);
      assert.equal((await backend.stat('empty'))?.size, 0);
      assert.equal((await readAll(backend, 'empty')).length, 0);
    });

    contractTest('createIfAbsent of an existing name returns false and leaves the object unchanged', async (backend) => {
      await backend.createIfAbsent('blobs/x', Readable.from([Buffer.from('first')]), { contentType: 'text/plain', metadata: { v: '1' } });
      const second = await backend.createIfAbsent('blobs/x', Readable.from([Buffer.from('second, longer')]), {
        contentType: 'application/json',
        metadata: { v: '2' },
      });
      assert.equal(second, false);
      const info = await backend.stat('blobs/x');
      assert.equal(info?.contentType, 'text/plain');
      assert.deepEqual(info?.metadata, { v: '1' });
      assert.equal((await readAll(backend, 'blobs/x')).toString(), 'first');
    });

    contractTest('createIfAbsent consumes or discards the body even when it loses', async (backend) => {
      await backend.createIfAbsent('taken', Readable.from([Buffer.from('winner')]));
      const body = Readable.from(chunks(256 * 1024, 4));
      assert.equal(await backend.createIfAbsent('taken', body), false);
      assert.ok(body.destroyed || body.readableEnded, 'the losing body is not left half-read and open');
    });

    contractTest('concurrent createIfAbsent of one name: exactly one writer wins and its bytes are stored', async (backend) => {
      const writers = Array.from({ length: 8 }, (_, i) => Buffer.from(`writer ${i} `.repeat(1000)));
      const results = await Promise.all(
        writers.map((bytes) => backend.createIfAbsent('race', Readable.from(splitBuffer(bytes, 1000)), { metadata: { writer: bytes.subarray(0, 8).toString() } })),
      );
      assert.equal(results.filter(Boolean).length, 1, `exactly one true in ${JSON.stringify(results)}`);
      const winner = writers[results.indexOf(true)]!;
      assert.deepEqual(await readAll(backend, 'race'), winner);
      assert.equal((await backend.stat('race'))?.metadata.writer, winner.subarray(0, 8).toString());
    });

    contractTest('ranged reads return exactly the inclusive byte range', async (backend) => {
      const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
      await backend.createIfAbsent('ranged', Readable.from([bytes]));
      for (const range of [
        { start: 0, end: 0 },
        { start: 10, end: 19 },
        { start: 990, end: 999 },
        { start: 0, end: 999 },
        { start: 500, end: 500 },
      ]) {
        const got = await buffer(await backend.read('ranged', range));
        assert.deepEqual(got, bytes.subarray(range.start, range.end + 1), `range ${range.start}-${range.end}`);
      }
    });

    contractTest('read of a missing object rejects with ObjectNotFound; stat answers undefined', async (backend) => {
      await assert.rejects(backend.read('missing/object'), (err: unknown) => err instanceof ObjectNotFound && err.objectName === 'missing/object');
      await assert.rejects(backend.read('missing/object', { start: 0, end: 9 }), ObjectNotFound);
      assert.equal(await backend.stat('missing/object'), undefined);
    });

    contractTest('moveIfAbsent promotes a temporary object with new metadata and removes the source', async (backend) => {
      await backend.createIfAbsent('tmp/upload-1', Readable.from([Buffer.from('layer bytes')]), { contentType: 'application/octet-stream', metadata: { state: 'partial' } });
      const moved = await backend.moveIfAbsent('tmp/upload-1', 'blobs/sha256/def', {
        contentType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        metadata: { digest: 'sha256:def' },
      });
      assert.equal(moved, true);
      assert.equal(await backend.stat('tmp/upload-1'), undefined);
      const info = await backend.stat('blobs/sha256/def');
      assert.equal(info?.contentType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      assert.deepEqual(info?.metadata, { digest: 'sha256:def' });
      assert.equal((await readAll(backend, 'blobs/sha256/def')).toString(), 'layer bytes');
    });

    contractTest('moveIfAbsent without options keeps the source content type and metadata', async (backend) => {
      await backend.createIfAbsent('tmp/upload-2', Readable.from([Buffer.from('abc')]), { contentType: 'text/plain', metadata: { k: 'v' } });
      assert.equal(await backend.moveIfAbsent('tmp/upload-2', 'final/2'), true);
      const info = await backend.stat('final/2');
      assert.equal(info?.contentType, 'text/plain');
      assert.deepEqual(info?.metadata, { k: 'v' });
    });

    contractTest('moveIfAbsent onto an existing name returns false, keeps the target and deletes the source', async (backend) => {
      await backend.createIfAbsent('blobs/sha256/same', Readable.from([Buffer.from('original')]), { metadata: { n: '1' } });
      await backend.createIfAbsent('tmp/upload-3', Readable.from([Buffer.from('duplicate')]), { metadata: { n: '2' } });
      assert.equal(await backend.moveIfAbsent('tmp/upload-3', 'blobs/sha256/same', { metadata: { n: '3' } }), false);
      assert.equal(await backend.stat('tmp/upload-3'), undefined);
      assert.equal((await readAll(backend, 'blobs/sha256/same')).toString(), 'original');
      assert.deepEqual((await backend.stat('blobs/sha256/same'))?.metadata, { n: '1' });
    });

    contractTest('moveIfAbsent of a missing source rejects', async (backend) => {
      await assert.rejects(backend.moveIfAbsent('tmp/never-written', 'final/none'));
      assert.equal(await backend.stat('final/none'), undefined);
    });

    contractTest('delete removes the object and is idempotent', async (backend) => {
      await backend.createIfAbsent('doomed', Readable.from([Buffer.from('x')]), { metadata: { a: 'b' } });
      await backend.delete('doomed');
      assert.equal(await backend.stat('doomed'), undefined);
      await assert.rejects(backend.read('doomed'), ObjectNotFound);
      await backend.delete('doomed');
      await backend.delete('never/existed');
      // The name is free again, and nothing of the old object (metadata included) comes back.
      assert.equal(await backend.createIfAbsent('doomed', Readable.from([Buffer.from('new')])), true);
      assert.deepEqual((await backend.stat('doomed'))?.metadata, {});
    });

    contractTest('list yields every object under a prefix, nested names included, and nothing else', async (backend) => {
      const names = ['list/a', 'list/b/c', 'list/b/d/e', 'list/bz', 'lisx/f', 'other/g', 'top'];
      for (const n of names) await backend.createIfAbsent(n, Readable.from([Buffer.from(n)]), { metadata: { n } });
      assert.deepEqual(await listNames(backend, 'list/'), ['list/a', 'list/b/c', 'list/b/d/e', 'list/bz']);
      assert.deepEqual(await listNames(backend, 'list/b/'), ['list/b/c', 'list/b/d/e']);
      assert.deepEqual(await listNames(backend, 'list/b'), ['list/b/c', 'list/b/d/e', 'list/bz']);
      assert.deepEqual(await listNames(backend, 'lis'), ['list/a', 'list/b/c', 'list/b/d/e', 'list/bz', 'lisx/f']);
      assert.deepEqual(await listNames(backend, ''), [...names].sort());
      assert.deepEqual(await listNames(backend, 'nothing/'), []);
      for await (const { name: n, info } of backend.list('list/b/d/')) {
        assert.equal(info.size, Buffer.byteLength(n));
        assert.deepEqual(info.metadata, { n });
        assert.ok(info.created instanceof Date && !Number.isNaN(info.created.getTime()));
      }
    });

    contractTest('list pages through many objects', async (backend) => {
      const names = Array.from({ length: 25 }, (_, i) => `many/${String(i).padStart(3, '0')}`);
      await Promise.all(names.map((n) => backend.createIfAbsent(n, Readable.from([Buffer.from(n)]))));
      assert.deepEqual(await listNames(backend, 'many/'), names);
    });

    contractTest('a body that fails half-way rejects and leaves nothing under the final name', async (backend) => {
      const failure = new Error('upstream went away');
      const body = Readable.from(
        (async function* () {
          yield* chunks(64 * 1024, 3);
          await new Promise((resolve) => setTimeout(resolve, 20));
          throw failure;
        })(),
      );
      await assert.rejects(backend.createIfAbsent('blobs/sha256/broken', body, { metadata: { d: 'x' } }), (err: unknown) => err === failure);
      assert.equal(await backend.stat('blobs/sha256/broken'), undefined);
      await assert.rejects(backend.read('blobs/sha256/broken'), ObjectNotFound);
      // Temporary areas are a backend's business, but nothing may be listed under the final name.
      const listed = await listNames(backend, '');
      assert.ok(!listed.some((n) => n.startsWith('blobs/')), `listing after a failed write: ${JSON.stringify(listed)}`);
      // And the name is not left locked.
      assert.equal(await backend.createIfAbsent('blobs/sha256/broken', Readable.from([Buffer.from('ok')])), true);
      assert.equal((await readAll(backend, 'blobs/sha256/broken')).toString(), 'ok');
    });

    contractTest('a multi-megabyte body streams through intact', async (backend) => {
      const chunkSize = 64 * 1024;
      const count = 48; // 3 MiB
      const expected = createHash('sha256');
      for (const c of chunks(chunkSize, count)) expected.update(c);
      assert.equal(await backend.createIfAbsent('big', Readable.from(chunks(chunkSize, count))), true);
      assert.equal((await backend.stat('big'))?.size, chunkSize * count);
      const actual = createHash('sha256');
      for await (const c of await backend.read('big')) actual.update(c as Buffer);
      assert.equal(actual.digest('hex'), expected.digest('hex'));
      const tail = await buffer(await backend.read('big', { start: chunkSize * count - 10, end: chunkSize * count - 1 }));
      assert.deepEqual(tail, chunks(chunkSize, count).at(-1)!.subarray(chunkSize - 10));
    });
  });
}

async function readAll(backend: StorageBackend, name: string): Promise<Buffer> {
  return buffer(await backend.read(name));
}

async function listNames(backend: StorageBackend, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const { name } of backend.list(prefix)) names.push(name);
  return names.sort();
}

/** Deterministic, non-repeating-per-chunk test data. */
function chunks(size: number, count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => {
    const c = Buffer.alloc(size);
    for (let j = 0; j < size; j += 4) c.writeUInt32BE((i * size + j) >>> 0, j);
    return c;
  });
}

function splitBuffer(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}
