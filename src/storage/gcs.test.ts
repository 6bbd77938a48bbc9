import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { startFakeGcs, type FakeGcs } from '../../test/support/fake-gcs.js';
import { runBackendContract } from './backend-contract.js';
import { GcsBackend, parseGcsStoreUrl, type GcsBackendOptions } from './gcs.js';

const BUCKET = 'kontain-test';

// Through the real client library against the local fake: once under a prefix with
// two-object list pages (so pagination is exercised), once at the bucket root.
runBackendContract('gcs (prefix, paged listing)', async () => {
  const fake = await startFakeGcs({ maxPageSize: 2 });
  return { backend: backendFor(fake, { prefix: 'stores/one' }), cleanup: () => fake.close(), age: async (name, ms) => fake.age(BUCKET, `stores/one/${name}`, ms) };
});
runBackendContract('gcs (bucket root)', async () => {
  const fake = await startFakeGcs();
  return { backend: backendFor(fake), cleanup: () => fake.close(), age: async (name, ms) => fake.age(BUCKET, name, ms) };
});

function backendFor(fake: FakeGcs, options: Partial<GcsBackendOptions> = {}): GcsBackend {
  return new GcsBackend({ bucket: BUCKET, apiEndpoint: fake.endpoint, urlMode: 'none', signedUrlExpirySeconds: 600, projectId: 'test-project', ...options });
}

/** Runs `fn` with a fresh fake and closes it afterwards. */
async function withFake<T>(fn: (fake: FakeGcs) => Promise<T>, options?: Parameters<typeof startFakeGcs>[0]): Promise<T> {
  const fake = await startFakeGcs(options);
  try {
    return await fn(fake);
  } finally {
    await fake.close();
  }
}

describe('GcsBackend', () => {
  test('objects live under the configured prefix in the bucket', () =>
    withFake(async (fake) => {
      const backend = backendFor(fake, { prefix: '/a/b/' });
      assert.equal(backend.description, `gs://${BUCKET}/a/b`);
      await backend.createIfAbsent('blobs/x', Readable.from([Buffer.from('x')]));
      assert.ok(fake.requests.some((r) => r.method === 'POST' && r.path.includes(`name=${encodeURIComponent('a/b/blobs/x')}`)));
      // Another store in the same bucket with a different prefix sees nothing of it.
      const other = backendFor(fake, { prefix: 'a/c' });
      assert.equal(await other.stat('blobs/x'), undefined);
      const names: string[] = [];
      for await (const entry of other.list('')) names.push(entry.name);
      assert.deepEqual(names, []);
    }));

  test('a multi-megabyte upload is one streaming request', () =>
    withFake(async (fake) => {
      const backend = backendFor(fake);
      const chunk = Buffer.alloc(256 * 1024);
      const hash = createHash('sha256');
      let produced = 0;
      async function* body() {
        for (let i = 0; i < 20; i++) {
          chunk.fill(i);
          hash.update(chunk);
          produced += chunk.length;
          yield Buffer.from(chunk);
        }
      }
      assert.equal(await backend.createIfAbsent('big', Readable.from(body()), { contentType: 'application/octet-stream' }), true);
      const uploads = fake.requests.filter((r) => r.path.startsWith('/upload/'));
      assert.equal(uploads.length, 1);
      assert.match(uploads[0]!.path, /uploadType=multipart/);
      assert.match(uploads[0]!.path, /ifGenerationMatch=0/);
      assert.equal((await backend.stat('big'))?.size, produced);
      const readBack = createHash('sha256');
      for await (const c of await backend.read('big')) readBack.update(c as Buffer);
      assert.equal(readBack.digest('hex'), hash.digest('hex'));
    }));

  test('a body that fails half-way leaves no upload request open', () =>
    withFake(async (fake) => {
      const backend = backendFor(fake);
      async function* failing() {
        yield Buffer.alloc(512 * 1024, 1);
        await new Promise((resolve) => setTimeout(resolve, 50));
        throw new Error('source failed');
      }
      await assert.rejects(backend.createIfAbsent('half', Readable.from(failing())), /source failed/);
      // The server notices the aborted request promptly; nothing is left hanging.
      for (let i = 0; i < 50 && fake.inFlight() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(fake.inFlight(), 0);
      assert.equal(await backend.stat('half'), undefined);
    }));

  test('an upload whose stored bytes do not hash to what was sent is removed and fails', () =>
    withFake(
      async (fake) => {
        const backend = backendFor(fake);
        await assert.rejects(backend.createIfAbsent('corrupted', Readable.from([Buffer.from('payload')])), /MD5 does not match/);
        assert.equal(await backend.stat('corrupted'), undefined);
      },
      { corruptUploads: true },
    ));

  test('an upload that cannot reach GCS fails naming the object', async () => {
    const fake = await startFakeGcs();
    const backend = backendFor(fake);
    await fake.close();
    await assert.rejects(backend.createIfAbsent('blobs/y', Readable.from([Buffer.from('y')])), /uploading gs:\/\/kontain-test\/blobs\/y/);
  });

  test("downloadURL in 'public' mode is the object's path-style URL and serves the bytes", () =>
    withFake(async (fake) => {
      const backend = backendFor(fake, { urlMode: 'public', prefix: 'p' });
      const bytes = Buffer.from('public bytes');
      await backend.createIfAbsent('blobs/sha256/0123', Readable.from([bytes]), { contentType: 'application/octet-stream' });
      const url = await backend.downloadURL('blobs/sha256/0123');
      assert.equal(url, `${fake.endpoint}/${BUCKET}/p/blobs/sha256/0123`);
      const res = await fetch(url!);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
      const ranged = await fetch(url!, { headers: { Range: 'bytes=7-11' } });
      assert.equal(ranged.status, 206);
      assert.equal(await ranged.text(), 'bytes');
    }));

  test("downloadURL in 'public' mode without an endpoint points at storage.googleapis.com", async () => {
    const backend = new GcsBackend({ bucket: 'my-bucket', prefix: 'kontain', urlMode: 'public', signedUrlExpirySeconds: 60 });
    assert.equal(await backend.downloadURL('blobs/sha256/ab'), 'https://storage.googleapis.com/my-bucket/kontain/blobs/sha256/ab');
  });

  test("downloadURL in 'signed' mode is a V4 signed URL that the endpoint accepts", async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const credentials = {
      client_email: 'kontain-signer@test-project.iam.gserviceaccount.com',
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    };
    await withFake(
      async (fake) => {
        const backend = backendFor(fake, { urlMode: 'signed', signedUrlExpirySeconds: 900, prefix: 'p', credentials });
        const bytes = Buffer.from('signed bytes');
        await backend.createIfAbsent('blobs/sha256/4567', Readable.from([bytes]));
        await backend.createIfAbsent('blobs/sha256/other', Readable.from([Buffer.from('other')]));
        const url = new URL((await backend.downloadURL('blobs/sha256/4567'))!);
        assert.equal(url.origin + url.pathname, `${fake.endpoint}/${BUCKET}/p/blobs/sha256/4567`);
        assert.equal(url.searchParams.get('X-Goog-Algorithm'), 'GOOG4-RSA-SHA256');
        assert.ok(url.searchParams.get('X-Goog-Credential')!.startsWith(`${credentials.client_email}/`));
        assert.ok(Math.abs(Number(url.searchParams.get('X-Goog-Expires')) - 900) <= 1);
        const res = await fetch(url);
        assert.equal(res.status, 200, await res.clone().text());
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
        // The signature covers the path: the same query on another object is refused.
        const forged = new URL(url);
        forged.pathname = `/${BUCKET}/p/blobs/sha256/other`;
        assert.equal((await fetch(forged)).status, 403);
      },
      { signerPublicKey: publicKey },
    );
  });

  test("downloadURL in 'none' mode is undefined", () =>
    withFake(async (fake) => {
      assert.equal(await backendFor(fake, { urlMode: 'none' }).downloadURL('anything'), undefined);
    }));

  test('the constructor refuses bad options with a clear message', () => {
    const base = { bucket: 'ok-bucket', urlMode: 'none' as const, signedUrlExpirySeconds: 60 };
    assert.throws(() => new GcsBackend({ ...base, bucket: 'Bad_Bucket' }), /invalid GCS bucket name "Bad_Bucket"/);
    assert.throws(() => new GcsBackend({ ...base, urlMode: 'private' as never }), /URL mode must be public, signed or none/);
    assert.throws(() => new GcsBackend({ ...base, signedUrlExpirySeconds: 0 }), /expiry/);
    assert.throws(() => new GcsBackend({ ...base, signedUrlExpirySeconds: 8 * 24 * 3600 }), /expiry/);
  });

  test('object names that cannot be content addresses are refused', () =>
    withFake(async (fake) => {
      const backend = backendFor(fake);
      for (const bad of ['', '/abs', 'a/../b', 'a//b', 'a\nb']) {
        await assert.rejects(backend.stat(bad), /invalid object name/, JSON.stringify(bad));
      }
    }));
});

describe('parseGcsStoreUrl', () => {
  test('splits gs://bucket/prefix', () => {
    assert.deepEqual(parseGcsStoreUrl('gs://my-bucket'), { bucket: 'my-bucket', prefix: '' });
    assert.deepEqual(parseGcsStoreUrl('gs://my-bucket/'), { bucket: 'my-bucket', prefix: '' });
    assert.deepEqual(parseGcsStoreUrl('gs://my-bucket/kontain'), { bucket: 'my-bucket', prefix: 'kontain' });
    assert.deepEqual(parseGcsStoreUrl('gs://my.bucket_1/a/b/'), { bucket: 'my.bucket_1', prefix: 'a/b' });
  });

  test('refuses what is not a valid gs:// URL', () => {
    for (const bad of ['my-bucket', 's3://my-bucket', 'gs://', 'gs:///prefix', 'gs://my-bucket?x=1', 'gs://my-bucket/a//b', 'gs://my-bucket/../x']) {
      assert.throws(() => parseGcsStoreUrl(bad), /gs:\/\/bucket|bucket name|prefix/, bad);
    }
    for (const bad of ['gs://UPPER', 'gs://ab', 'gs://-leading', 'gs://trailing-', 'gs://has space', `gs://${'a'.repeat(64)}`, 'gs://192.168.1.1', 'gs://google-things', 'gs://goog-x']) {
      assert.throws(() => parseGcsStoreUrl(bad), /invalid GCS bucket name/, bad);
    }
  });
});
