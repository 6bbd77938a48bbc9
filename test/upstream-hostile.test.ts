/**
 * What kontain does with slow clients and hostile upstreams: a real registry
 * (`docker-registry`) next to a loopback one that lies (test/support/hostile-upstream.ts).
 * Liveness is asserted as order ("B completes while A is still paused"), never as timing.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from './support/upstream-images.js';
import { startHostileUpstream, type HostileUpstream } from './support/hostile-upstream.js';
import { request, registryError } from './support/http.js';

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');
const mirrorPath = (host: string) => host.replace(':', '-');
const MANIFEST_ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' };

let real: UpstreamRegistry;
let hostile: HostileUpstream;
let server: TestServer;
/** One big layer (item 3) and two small ones only these tests pull. */
let big: WrittenLayout;
let shared: WrittenLayout;

before(async () => {
  real = await startUpstreamRegistry();
  hostile = await startHostileUpstream();
  big = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'big.bin': randomBytes(24 * 1024 * 1024) })] }]);
  await pushOciLayout(big, `${real.host}/lib/big:v1`);
  shared = await writeOciLayout(await layoutDir(), 'v1', [
    { layers: [await tarLayer({ 'one': randomBytes(200_000) }), await tarLayer({ 'two': randomBytes(200_000) }), await tarLayer({ 'three': randomBytes(200_000) })] },
  ]);
  await pushOciLayout(shared, `${real.host}/lib/shared:v1`);
  server = await startKontain({
    KONTAIN_INSECURE_REGISTRIES: `${real.host},${hostile.host}`,
    // Small limits, so the slow cases end quickly.
    KONTAIN_UPSTREAM_STALL_MS: '3000',
    KONTAIN_UPSTREAM_MIN_RATE: '2000',
    KONTAIN_UPSTREAM_RATE_WINDOW_MS: '1000',
  });
});
after(async () => {
  await server.stop();
  await hostile.stop();
  await real.stop();
});

const realBlob = (repo: string, digest: string) => `${server.url}/v2/mirror/${mirrorPath(real.host)}/${repo}/blobs/${digest}`;
const hostileUrl = (suffix: string) => `${server.url}/v2/mirror/${hostile.mirrorPath}/${suffix}`;

/** A GET whose reader stops after the first chunk until `resume` is called. */
function pausedReader(url: string): Promise<{ status: number; resume(): Promise<Buffer>; ended(): boolean }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let ended = false;
      const done = new Promise<Buffer>((ok, fail) => {
        res.on('end', () => {
          ended = true;
          ok(Buffer.concat(chunks));
        });
        res.on('error', fail);
      });
      done.catch(() => undefined);
      res.once('data', (chunk: Buffer) => {
        chunks.push(chunk);
        res.pause();
        resolve({
          status: res.statusCode ?? 0,
          ended: () => ended,
          resume() {
            res.on('data', (c: Buffer) => chunks.push(c));
            res.resume();
            return done;
          },
        });
      });
    }).on('error', reject);
  });
}

async function storedFiles(sub: string): Promise<string[]> {
  return readdir(path.join(server.storeDir!, sub)).catch(() => []);
}

describe('a slow client of an uncached blob (item 3)', () => {
  test('another client completes, and a small Range is answered, while the first is paused', async () => {
    const layer = big.images[0]!.layers[0]!;
    const bytes = big.blobs.get(layer.digest)!;
    await request(`${server.url}/v2/mirror/${mirrorPath(real.host)}/lib/big/manifests/v1`, { headers: MANIFEST_ACCEPT });
    const a = await pausedReader(realBlob('lib/big', layer.digest));
    assert.equal(a.status, 200);
    const b = await request(realBlob('lib/big', layer.digest), { timeoutMs: 30_000 });
    assert.equal(b.status, 200);
    assert.equal(sha256(b.body), layer.digest);
    const range = await request(realBlob('lib/big', layer.digest), { headers: { Range: 'bytes=100-199' }, timeoutMs: 30_000 });
    assert.equal(range.status, 206);
    assert.deepEqual(range.body, bytes.subarray(100, 200));
    assert.equal(a.ended(), false, 'A is still paused');
    // A, at its own pace, gets every byte (the rest from the store).
    assert.equal(sha256(await a.resume()), layer.digest);
  });
});

describe('fetches of one digest from different upstreams (item 4)', () => {
  test("a trickling registry's copy of a digest does not hold up the real registry's", async () => {
    const layer = shared.images[0]!.layers[0]!;
    const bytes = shared.blobs.get(layer.digest)!;
    hostile.answer(`evil/app/blobs/${layer.digest}`, { kind: 'trickle', body: bytes, intervalMs: 200 });
    const slow = request(hostileUrl(`evil/app/blobs/${layer.digest}`), { timeoutMs: 60_000 }).catch((err: Error) => err);
    while (!hostile.open(`evil/app/blobs/${layer.digest}`)) await new Promise((r) => setTimeout(r, 20));
    const good = await request(realBlob('lib/shared', layer.digest), { timeoutMs: 30_000 });
    assert.equal(good.status, 200);
    assert.equal(sha256(good.body), layer.digest);
    await slow;
  });

  test("a registry's slow 404 for a digest does not reach a request for the real one", async () => {
    const layer = shared.images[0]!.layers[1]!;
    hostile.answer(`evil/app/blobs/${layer.digest}`, { kind: 'status', status: 404, delayMs: 1000, code: 'BLOB_UNKNOWN' });
    const [missing, good] = await Promise.all([
      request(hostileUrl(`evil/app/blobs/${layer.digest}`), { timeoutMs: 30_000 }),
      // Started once the hostile fetch is in flight.
      new Promise((r) => setTimeout(r, 200)).then(() => request(realBlob('lib/shared', layer.digest), { timeoutMs: 30_000 })),
    ]);
    assert.equal(missing.status, 404);
    assert.equal(registryError(missing).code, 'BLOB_UNKNOWN');
    assert.equal(good.status, 200);
    assert.equal(sha256(good.body), layer.digest);
  });
});

describe('sizes that lie (item 5)', () => {
  test('an endless blob body stops past the manifest size: nothing stored, a 424 naming the upstream', async () => {
    const digest = sha256(Buffer.from('endless'));
    hostile.image('evil/endless', 'v1', [{ digest, size: 1000 }]);
    hostile.answer(`evil/endless/blobs/${digest}`, { kind: 'endless' });
    assert.equal((await request(hostileUrl('evil/endless/manifests/v1'), { headers: MANIFEST_ACCEPT })).status, 200);
    const res = await request(hostileUrl(`evil/endless/blobs/${digest}`), { timeoutMs: 30_000 });
    assert.equal(res.status, 424);
    const error = registryError(res);
    assert.equal(error.code, 'UNAVAILABLE');
    assert.match(error.message, new RegExp(`upstream ${hostile.host} .*more than the expected 1000 bytes.*nothing was stored`));
    assert.ok(!(await storedFiles('blobs/sha256')).includes(digest.slice(7)));
    assert.deepEqual(await storedFiles('tmp'), []);
  });

  test('a Content-Length other than the manifest size is refused before anything is read', async () => {
    const digest = sha256(Buffer.from('liar'));
    hostile.image('evil/liar', 'v1', [{ digest, size: 10 }]);
    hostile.answer(`evil/liar/blobs/${digest}`, { kind: 'endless', contentLength: 50_000_000 });
    await request(hostileUrl('evil/liar/manifests/v1'), { headers: MANIFEST_ACCEPT });
    const res = await request(hostileUrl(`evil/liar/blobs/${digest}`), { timeoutMs: 30_000 });
    assert.equal(res.status, 424);
    assert.match(registryError(res).message, /sent 50000000 bytes for .* expected 10/);
  });

  test('a blob no manifest gives a size for, sent without a length, is refused', async () => {
    const digest = sha256(Buffer.from('unannounced'));
    hostile.answer(`evil/loose/blobs/${digest}`, { kind: 'endless' });
    const res = await request(hostileUrl(`evil/loose/blobs/${digest}`), { timeoutMs: 30_000 });
    assert.equal(res.status, 424);
    assert.match(registryError(res).message, new RegExp(`upstream ${hostile.host} sent blob .* without a length`));
  });
});

describe('slow upstreams (item 7)', () => {
  test('a trickling manifest is cut off with a 424 saying the rate', async () => {
    const bytes = hostile.image('evil/slow', 'v1', []).bytes;
    hostile.answer('evil/slow/manifests/v1', { kind: 'trickle', body: bytes, intervalMs: 100 });
    const res = await request(hostileUrl('evil/slow/manifests/v1'), { headers: MANIFEST_ACCEPT, timeoutMs: 30_000 });
    assert.equal(res.status, 424);
    assert.match(registryError(res).message, new RegExp(`upstream ${hostile.host} sent \\d+ bytes in 1 s, below the minimum of 2000 bytes/s`));
  });

  test('a trickling blob is cut off; a client waiting for it gets a 424', async () => {
    const body = randomBytes(5000);
    const digest = sha256(body);
    hostile.image('evil/drip', 'v1', [{ digest, size: body.length }]);
    hostile.answer(`evil/drip/blobs/${digest}`, { kind: 'trickle', body, intervalMs: 100 });
    await request(hostileUrl('evil/drip/manifests/v1'), { headers: MANIFEST_ACCEPT });
    const first = request(hostileUrl(`evil/drip/blobs/${digest}`), { timeoutMs: 30_000 }).catch((err: Error) => err);
    while (!hostile.open(`evil/drip/blobs/${digest}`)) await new Promise((r) => setTimeout(r, 20));
    const waiting = await request(hostileUrl(`evil/drip/blobs/${digest}`), { timeoutMs: 30_000 });
    assert.equal(waiting.status, 424);
    assert.match(registryError(waiting).message, /below the minimum of 2000 bytes\/s/);
    const streamed = await first;
    // The first client was already sent headers: its body is cut short.
    assert.ok(streamed instanceof Error || streamed.body.length < body.length);
    assert.ok(!(await storedFiles('blobs/sha256')).includes(digest.slice(7)));
  });

  test('a 404 that takes longer than the stall time is a 424', async () => {
    hostile.answer('evil/late/manifests/v1', { kind: 'status', status: 404, delayMs: 10_000 });
    const res = await request(hostileUrl('evil/late/manifests/v1'), { headers: MANIFEST_ACCEPT, timeoutMs: 30_000 });
    assert.equal(res.status, 424);
    assert.match(registryError(res).message, /sent no response .* within 3000 ms/);
  });
});

test('a refused token realm on one repository does not deny another repository (item 12)', async () => {
  hostile.answer('evil/realm/manifests/v1', { kind: 'status', status: 401, code: 'UNAUTHORIZED', headers: { 'WWW-Authenticate': 'Bearer realm="http://10.0.0.1/token",service="evil"' } });
  const { digest } = hostile.image('good/open', 'v1', []);
  const refused = await request(hostileUrl('evil/realm/manifests/v1'), { headers: MANIFEST_ACCEPT });
  assert.equal(refused.status, 403);
  assert.match(registryError(refused).message, /10\.0\.0\.1/);
  const open = await request(hostileUrl('good/open/manifests/v1'), { headers: MANIFEST_ACCEPT });
  assert.equal(open.status, 200);
  assert.equal(open.headers['docker-content-digest'], digest);
});

describe('content is served only under repositories that reference it (item 13)', () => {
  test('a mirrored layer and manifest are not served by digest under another repository or host', async () => {
    const layer = shared.images[0]!.layers[2]!;
    const manifest = await request(`${server.url}/v2/mirror/${mirrorPath(real.host)}/lib/shared/manifests/v1`, { headers: MANIFEST_ACCEPT });
    assert.equal(manifest.status, 200);
    const own = await request(realBlob('lib/shared', layer.digest));
    assert.equal(own.status, 200);
    assert.equal(sha256(own.body), layer.digest);

    for (const elsewhere of [`random/x`, `flatten/x`, `mirror/${mirrorPath(real.host)}/lib/other`, `mirror/${hostile.mirrorPath}/lib/shared`]) {
      const blob = await request(`${server.url}/v2/${elsewhere}/blobs/${layer.digest}`);
      assert.equal(blob.status, 404, `blob under ${elsewhere}`);
      assert.equal(registryError(blob).code, 'BLOB_UNKNOWN');
      const byDigest = await request(`${server.url}/v2/${elsewhere}/manifests/${shared.top.digest}`, { headers: MANIFEST_ACCEPT });
      assert.equal(byDigest.status, 404, `manifest under ${elsewhere}`);
      assert.equal(registryError(byDigest).code, 'MANIFEST_UNKNOWN');
    }
  });
});

test('an unresolvable upstream is answered the same by mirror, ko and apko (item 17)', async () => {
  const other = await startKontain({
    KONTAIN_GOPROXY: 'http://does-not-exist.invalid',
    KONTAIN_APK_REPOSITORY: 'https://does-not-exist.invalid/os',
    KONTAIN_APK_KEYRING: 'https://does-not-exist.invalid/key.rsa.pub',
  });
  try {
    const answers = [];
    for (const path of ['mirror/does-not-exist.invalid/foo/manifests/v1', 'ko/example.com/foo/manifests/v1.0.0', 'apko/busybox/manifests/latest']) {
      const res = await request(`${other.url}/v2/${path}`, { headers: MANIFEST_ACCEPT, timeoutMs: 30_000 });
      const error = registryError(res);
      assert.match(error.message, /does-not-exist\.invalid/, path);
      answers.push({ status: res.status, code: error.code });
    }
    assert.deepEqual(answers, Array(3).fill({ status: 404, code: 'NAME_UNKNOWN' }));
  } finally {
    await other.stop();
  }
});
