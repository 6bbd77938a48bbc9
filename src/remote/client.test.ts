/**
 * RegistryClient against the real distribution registry (Debian's docker-registry), with
 * images pushed by skopeo; a recording proxy in front counts requests and injects faults.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { MediaType } from '../oci/mediatypes.js';
import { RegistryClient, type RegistryClientOptions } from './client.js';
import { UpstreamError } from './errors.js';
import { startUpstreamRegistry, freePort, type UpstreamRegistry } from '../../test/support/upstream-registry.js';
import { startTokenServer, type TokenServer } from '../../test/support/token-server.js';
import { startUpstreamProxy, type UpstreamProxy } from '../../test/support/upstream-proxy.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from '../../test/support/upstream-images.js';

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');
const alice = { username: 'alice', password: 'wonder land' };

let plain: UpstreamRegistry;
let basic: UpstreamRegistry;
let tokenRegistry: UpstreamRegistry;
let tokens: TokenServer;
let proxy: UpstreamProxy; // → plain
let basicProxy: UpstreamProxy; // → basic
let storage: UpstreamProxy; // a "blob storage" host that redirects point at
let single: WrittenLayout;
let multi: WrittenLayout;
let workDir: string;
const clients: RegistryClient[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

function client(options: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({
    insecureRegistries: [plain.host, proxy.host, basic.host, basicProxy.host, storage.host, tokenRegistry.host, new URL(tokens.url).host],
    retries: 2,
    retry: { baseMs: 10, maxDelayMs: 50, maxRetryAfterMs: 1000 },
    timeouts: { connectMs: 2000, stallMs: 2000 },
    userAgent: 'kontain-test',
    ...options,
  });
  clients.push(c);
  return c;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function upstreamError(check: { status?: number; code?: string; message?: RegExp }) {
  return (err: unknown) => {
    assert.ok(err instanceof UpstreamError, `expected UpstreamError, got ${String(err)}`);
    if (check.status !== undefined) assert.equal(err.status, check.status, err.message);
    if (check.code !== undefined) assert.equal(err.code, check.code, err.message);
    if (check.message) assert.match(err.message, check.message);
    return true;
  };
}

async function dockerConfig(auths: Record<string, unknown>): Promise<string> {
  const file = path.join(workDir, `config-${randomBytes(4).toString('hex')}.json`);
  await writeFile(file, JSON.stringify({ auths }));
  return file;
}

before(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'kontain-client-test-'));
  tokens = await startTokenServer({ users: { [alice.username]: alice.password } });
  cleanups.push(() => tokens.stop());
  [plain, basic, tokenRegistry] = await Promise.all([
    startUpstreamRegistry(),
    startUpstreamRegistry({ htpasswd: alice }),
    startUpstreamRegistry({ token: tokens.registryAuth }),
  ]);
  cleanups.push(() => plain.stop(), () => basic.stop(), () => tokenRegistry.stop());
  [proxy, basicProxy, storage] = await Promise.all([startUpstreamProxy(plain.host), startUpstreamProxy(basic.host), startUpstreamProxy()]);
  cleanups.push(() => proxy.stop(), () => basicProxy.stop(), () => storage.stop());

  single = await writeOciLayout(await layoutDir(), 'v1', [
    { layers: [await tarLayer({ 'etc/hello': 'hello\n' }), await tarLayer({ 'data/big': randomBytes(200_000) })] },
  ]);
  multi = await writeOciLayout(await layoutDir(), 'multi', [
    { layers: [await tarLayer({ arch: 'amd64\n' })], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [await tarLayer({ arch: 'arm64\n' })], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]);
  cleanups.push(() => rm(single.dir, { recursive: true, force: true }), () => rm(multi.dir, { recursive: true, force: true }));
  await Promise.all([
    pushOciLayout(single, `${plain.host}/test/img:v1`),
    pushOciLayout(multi, `${plain.host}/test/img:multi`),
    pushOciLayout(single, `${basic.host}/test/private:v1`, { creds: alice }),
    pushOciLayout(single, `${tokenRegistry.host}/test/tok:v1`, { creds: alice }),
  ]);
  await Promise.all([pushOciLayout(single, `${plain.host}/test/img:v2`), pushOciLayout(single, `${plain.host}/test/img:v3`)]);
});

after(async () => {
  for (const c of clients) c.close();
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('against a plain registry', { timeout: 60_000 }, () => {
  test('resolve by tag is one HEAD and no GET', async () => {
    const c = client();
    proxy.requests.length = 0;
    const descriptor = await c.resolve(`${proxy.host}/test/img:v1`);
    assert.deepEqual(descriptor, { mediaType: MediaType.ociManifest, digest: single.top.digest, size: single.top.size });
    assert.deepEqual(proxy.requests.map((r) => `${r.method} ${r.path}`), ['HEAD /v2/test/img/manifests/v1']);
    // The registry agrees: it logged a HEAD of the tag.
    assert.ok((await plain.requests()).some((r) => r.method === 'HEAD' && r.uri === '/v2/test/img/manifests/v1' && r.status === 200));
  });

  test('resolve of a two-platform index', async () => {
    const descriptor = await client().resolve(`${plain.host}/test/img:multi`);
    assert.deepEqual(descriptor, { mediaType: MediaType.ociIndex, digest: multi.top.digest, size: multi.top.size });
  });

  test('resolve falls back to GET when HEAD gives no digest', async () => {
    proxy.requests.length = 0;
    proxy.intercept((req, res) => {
      if (req.method !== 'HEAD') return false;
      res.writeHead(200, { 'Content-Type': MediaType.ociManifest, 'Content-Length': String(single.top.size) }).end();
      return true;
    });
    try {
      const descriptor = await client().resolve(`${proxy.host}/test/img:v1`);
      assert.deepEqual(descriptor, { mediaType: MediaType.ociManifest, digest: single.top.digest, size: single.top.size });
      assert.deepEqual(proxy.requests.map((r) => r.method), ['HEAD', 'GET']);
    } finally {
      proxy.intercept(undefined);
    }
  });

  test('getManifest by digest and by tag returns the exact bytes', async () => {
    const c = client();
    const child = multi.images[1]!;
    const byDigest = await c.getManifest({ registry: plain.host, repository: 'test/img', digest: child.manifest.digest });
    assert.deepEqual(byDigest, { bytes: child.manifestBytes, mediaType: MediaType.ociManifest, digest: child.manifest.digest });
    const byTag = await c.getManifest(`${plain.host}/test/img:multi`);
    assert.deepEqual(byTag, { bytes: multi.topBytes, mediaType: MediaType.ociIndex, digest: multi.top.digest });
    const index = JSON.parse(byTag.bytes.toString()) as { manifests: Array<{ platform: { architecture: string } }> };
    assert.deepEqual(index.manifests.map((m) => m.platform.architecture), ['amd64', 'arm64']);
  });

  test('a manifest whose bytes do not match the digest asked for is refused', async () => {
    proxy.intercept((req, res) => {
      if (!req.url?.includes('/manifests/')) return false;
      res.writeHead(200, { 'Content-Type': MediaType.ociManifest, 'Docker-Content-Digest': multi.images[0]!.manifest.digest });
      res.end(single.topBytes);
      return true;
    });
    try {
      const c = client();
      await assert.rejects(
        c.getManifest({ registry: proxy.host, repository: 'test/img', digest: multi.images[0]!.manifest.digest }),
        upstreamError({ code: 'DIGEST_INVALID', message: new RegExp(`upstream ${proxy.host} sent a bad manifest.*hashes to ${single.top.digest}`) }),
      );
      await assert.rejects(c.getManifest(`${proxy.host}/test/img:v1`), upstreamError({ code: 'DIGEST_INVALID', message: /Docker-Content-Digest says/ }));
    } finally {
      proxy.intercept(undefined);
    }
  });

  test('unknown tag, blob and repository are 404s with the registry code', async () => {
    const c = client();
    await assert.rejects(c.getManifest(`${plain.host}/test/img:nope`), upstreamError({ status: 404, code: 'MANIFEST_UNKNOWN', message: new RegExp(`upstream ${plain.host} answered 404`) }));
    await assert.rejects(c.resolve(`${plain.host}/test/img:nope`), upstreamError({ status: 404 }));
    await assert.rejects(
      c.blob({ registry: plain.host, repository: 'test/img' }, 'sha256:' + '1'.repeat(64)).then((b) => collect(b.stream)),
      upstreamError({ status: 404, code: 'BLOB_UNKNOWN' }),
    );
    await assert.rejects(c.tags({ registry: plain.host, repository: 'test/none' }), upstreamError({ status: 404, code: 'NAME_UNKNOWN' }));
  });

  test('a blob streams with its size and sha256', async () => {
    const layer = single.images[0]!.layers[1]!;
    const blob = await client().blob({ registry: plain.host, repository: 'test/img' }, layer.digest, { size: layer.size });
    assert.equal(blob.size, layer.size);
    assert.equal(blob.verified, true);
    const bytes = await collect(blob.stream);
    assert.equal(sha256(bytes), layer.digest);
    assert.deepEqual(bytes, single.blobs.get(layer.digest));
  });

  test('a byte range of a blob', async () => {
    const layer = single.images[0]!.layers[1]!;
    const whole = single.blobs.get(layer.digest)!;
    const c = client();
    const part = await c.blob({ registry: plain.host, repository: 'test/img' }, layer.digest, { range: { start: 1000, end: 1999 } });
    assert.equal(part.size, 1000);
    assert.equal(part.verified, false);
    assert.deepEqual(await collect(part.stream), whole.subarray(1000, 2000));
    // An upstream that ignores Range sends everything: the range is cut out and the whole still checked.
    proxy.intercept((req) => {
      delete req.headers.range;
      return false;
    });
    try {
      const cut = await c.blob({ registry: proxy.host, repository: 'test/img' }, layer.digest, { range: { start: 5, end: 9 } });
      assert.equal(cut.size, 5);
      assert.equal(cut.verified, true);
      assert.deepEqual(await collect(cut.stream), whole.subarray(5, 10));
    } finally {
      proxy.intercept(undefined);
    }
  });

  test('tags, with n and last passed through and Link returned', async () => {
    const c = client();
    const all = await c.tags({ registry: plain.host, repository: 'test/img' });
    // distribution 2.8 lists tags in storage order, not sorted.
    assert.deepEqual({ ...all, tags: [...all.tags].sort() }, { name: 'test/img', tags: ['multi', 'v1', 'v2', 'v3'] });
    proxy.requests.length = 0;
    // distribution 2.8 ignores n/last for tags (it pages only _catalog); the query still goes through.
    await c.tags({ registry: proxy.host, repository: 'test/img' }, { n: 2, last: 'multi' });
    assert.deepEqual(proxy.requests.map((r) => r.path), ['/v2/test/img/tags/list?n=2&last=multi']);
    proxy.intercept((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', Link: '</v2/test/img/tags/list?n=2&last=v1>; rel="next"' });
      res.end(JSON.stringify({ name: 'test/img', tags: ['multi', 'v1'] }));
      return true;
    });
    try {
      assert.deepEqual(await c.tags({ registry: proxy.host, repository: 'test/img' }, { n: 2 }), {
        name: 'test/img',
        tags: ['multi', 'v1'],
        next: { link: '/v2/test/img/tags/list?n=2&last=v1', n: 2, last: 'v1' },
      });
    } finally {
      proxy.intercept(undefined);
    }
  });

  test('referrers: undefined without the API, the index with it', async () => {
    const c = client();
    assert.equal(await c.referrers({ registry: plain.host, repository: 'test/img' }, single.top.digest), undefined);
    const index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [{ mediaType: MediaType.ociManifest, digest: single.top.digest, size: 1, artifactType: 'application/x-sig' }] };
    proxy.intercept((req, res) => {
      assert.match(req.url ?? '', /\/referrers\/sha256:[a-f0-9]{64}\?artifactType=application%2Fx-sig$/);
      res.writeHead(200, { 'Content-Type': MediaType.ociIndex }).end(JSON.stringify(index));
      return true;
    });
    try {
      assert.deepEqual(await c.referrers({ registry: proxy.host, repository: 'test/img' }, single.top.digest, 'application/x-sig'), index);
    } finally {
      proxy.intercept(undefined);
    }
  });

  test('Host header carries the name while the connection goes to the checked address', async () => {
    const port = Number(proxy.host.split(':')[1]);
    const c = client({
      insecureRegistries: [`registry.test:${port}`],
      lookup: async (host) => {
        assert.equal(host, 'registry.test');
        return [{ address: '127.0.0.1', family: 4 }];
      },
    });
    proxy.requests.length = 0;
    assert.equal((await c.resolve(`registry.test:${port}/test/img:v1`)).digest, single.top.digest);
    assert.equal(proxy.requests[0]!.host, `registry.test:${port}`);
  });
});

describe('retries and timeouts', { timeout: 60_000 }, () => {
  test('503 and 429 with a short Retry-After are retried', async () => {
    let failures = 2;
    proxy.requests.length = 0;
    proxy.intercept((_req, res) => {
      if (failures-- <= 0) return false;
      res.writeHead(failures ? 503 : 429, { 'Retry-After': '0', 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}');
      return true;
    });
    try {
      const m = await client().getManifest(`${proxy.host}/test/img:v1`);
      assert.equal(m.digest, single.top.digest);
      assert.equal(proxy.requests.length, 3);
    } finally {
      proxy.intercept(undefined);
    }
  });

  test('a Retry-After beyond the bound fails at once with the upstream code', async () => {
    proxy.requests.length = 0;
    proxy.intercept((_req, res) => {
      res.writeHead(429, { 'Retry-After': '3600', 'Content-Type': 'application/json' }).end('{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}');
      return true;
    });
    try {
      await assert.rejects(client().getManifest(`${proxy.host}/test/img:v1`), upstreamError({ status: 429, code: 'TOOMANYREQUESTS', message: /pull rate limit/ }));
      assert.equal(proxy.requests.length, 1);
    } finally {
      proxy.intercept(undefined);
    }
  });

  test('persistent 500s give up after the retries', async () => {
    proxy.requests.length = 0;
    proxy.intercept((_req, res) => {
      res.writeHead(500).end();
      return true;
    });
    try {
      await assert.rejects(client().resolve(`${proxy.host}/test/img:v1`), upstreamError({ status: 500, message: /server error/ }));
      assert.equal(proxy.requests.length, 3);
    } finally {
      proxy.intercept(undefined);
    }
  });

  test('connection refused is retried, then UNREACHABLE', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(
      client({ insecureRegistries: [`127.0.0.1:${port}`] }).resolve(`127.0.0.1:${port}/test/img:v1`),
      upstreamError({ status: 0, code: 'UNREACHABLE', message: /cannot reach upstream 127\.0\.0\.1:\d+: .*ECONNREFUSED/ }),
    );
    assert.ok(Date.now() - started < 5000);
  });

  test('no response headers within stallMs', async () => {
    const held: ServerResponse[] = [];
    proxy.intercept((_req, res) => {
      held.push(res);
      return true;
    });
    try {
      const started = Date.now();
      await assert.rejects(
        client({ retries: 0, timeouts: { stallMs: 300 } }).resolve(`${proxy.host}/test/img:v1`),
        upstreamError({ code: 'TIMEOUT', message: /sent no response .* within 300 ms/ }),
      );
      assert.ok(Date.now() - started < 3000);
    } finally {
      proxy.intercept(undefined);
      for (const res of held) res.destroy();
    }
  });

  test('a blob body that stops flowing errors the stream; a slow reader does not', async () => {
    const layer = single.images[0]!.layers[1]!;
    const whole = single.blobs.get(layer.digest)!;
    const held: ServerResponse[] = [];
    proxy.intercept((req, res) => {
      if (!req.url?.includes('/blobs/')) return false;
      held.push(res);
      res.writeHead(200, { 'Content-Length': String(whole.length) });
      res.write(whole.subarray(0, 1000));
      return true;
    });
    const c = client({ timeouts: { stallMs: 300 } });
    try {
      const blob = await c.blob({ registry: proxy.host, repository: 'test/img' }, layer.digest);
      await assert.rejects(collect(blob.stream), upstreamError({ code: 'TIMEOUT', message: /stalled: no data for 300 ms/ }));
    } finally {
      proxy.intercept(undefined);
      for (const res of held) res.destroy();
    }
    // Not reading for longer than stallMs is the reader's choice, not a stall.
    const blob = await c.blob({ registry: proxy.host, repository: 'test/img' }, layer.digest);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(sha256(await collect(blob.stream)), layer.digest);
  });

  test('a connection closed mid-blob errors the stream', async () => {
    const layer = single.images[0]!.layers[1]!;
    const whole = single.blobs.get(layer.digest)!;
    proxy.intercept((req, res) => {
      if (!req.url?.includes('/blobs/')) return false;
      res.writeHead(200, { 'Content-Length': String(whole.length) });
      res.write(whole.subarray(0, 5000), () => res.destroy());
      return true;
    });
    try {
      const blob = await client().blob({ registry: proxy.host, repository: 'test/img' }, layer.digest);
      await assert.rejects(collect(blob.stream), upstreamError({ code: 'UNREACHABLE', message: /closed the connection|broke off/ }));
    } finally {
      proxy.intercept(undefined);
    }
  });
});

describe('redirects', { timeout: 60_000 }, () => {
  test('a blob redirect to another host is followed without the Authorization header', async () => {
    const layer = single.images[0]!.layers[0]!;
    basicProxy.requests.length = 0;
    storage.requests.length = 0;
    basicProxy.intercept((req, res) => {
      if (!req.url?.includes('/blobs/') || !req.headers.authorization) return false;
      res.writeHead(307, { Location: `http://${storage.host}/bucket/${layer.digest}?sig=1` }).end();
      return true;
    });
    storage.intercept((_req, res) => {
      res.writeHead(200, { 'Content-Length': String(layer.size), 'Content-Type': 'application/octet-stream' }).end(single.blobs.get(layer.digest));
      return true;
    });
    try {
      const c = client({ dockerConfigPath: await dockerConfig({ [basicProxy.host]: { auth: Buffer.from(`${alice.username}:${alice.password}`).toString('base64') } }) });
      const blob = await c.blob({ registry: basicProxy.host, repository: 'test/private' }, layer.digest);
      assert.equal(sha256(await collect(blob.stream)), layer.digest);
      assert.deepEqual(basicProxy.requests.map((r) => Boolean(r.authorization)), [false, true], 'challenged, then Basic');
      assert.equal(storage.requests.length, 1);
      assert.equal(storage.requests[0]!.authorization, undefined);
    } finally {
      basicProxy.intercept(undefined);
      storage.intercept(undefined);
    }
  });

  test('a redirect to a loopback host that is not allowlisted is refused', async () => {
    proxy.intercept((req, res) => {
      if (!req.url?.includes('/blobs/')) return false;
      res.writeHead(307, { Location: 'http://127.0.0.3:9/latest/meta-data' }).end();
      return true;
    });
    try {
      await assert.rejects(
        client().blob({ registry: proxy.host, repository: 'test/img' }, single.images[0]!.layers[0]!.digest),
        upstreamError({ code: 'ADDRESS_REFUSED', message: /plain HTTP to 127\.0\.0\.3:9/ }),
      );
    } finally {
      proxy.intercept(undefined);
    }
  });
});

describe('Basic auth (htpasswd)', { timeout: 60_000 }, () => {
  test('credentials from config.json work', async () => {
    const c = client({ dockerConfigPath: await dockerConfig({ [`http://${basic.host}`]: { auth: Buffer.from(`${alice.username}:${alice.password}`).toString('base64') } }) });
    const ref = `${basic.host}/test/private:v1`;
    assert.equal((await c.resolve(ref)).digest, single.top.digest);
    assert.deepEqual((await c.getManifest(ref)).bytes, single.topBytes);
    const layer = single.images[0]!.layers[0]!;
    const blob = await c.blob({ registry: basic.host, repository: 'test/private' }, layer.digest);
    assert.equal(sha256(await collect(blob.stream)), layer.digest);
  });

  test('without credentials, or with wrong ones: 401', async () => {
    const ref = `${basic.host}/test/private:v1`;
    await assert.rejects(client().getManifest(ref), upstreamError({ status: 401, code: 'UNAUTHORIZED', message: new RegExp(`upstream ${basic.host} answered 401`) }));
    await assert.rejects(client().resolve(ref), upstreamError({ status: 401 }));
    const wrong = client({ dockerConfigPath: await dockerConfig({ [basic.host]: { username: alice.username, password: 'nope' } }) });
    await assert.rejects(wrong.getManifest(ref), upstreamError({ status: 401, code: 'UNAUTHORIZED' }));
  });
});

describe('token auth (Bearer)', { timeout: 60_000 }, () => {
  test('a credentialed token is fetched once and reused', async () => {
    tokens.requests.length = 0;
    const c = client({ dockerConfigPath: await dockerConfig({ [tokenRegistry.host]: { username: alice.username, password: alice.password } }) });
    const ref = `${tokenRegistry.host}/test/tok:v1`;
    assert.equal((await c.resolve(ref)).digest, single.top.digest);
    assert.deepEqual((await c.getManifest({ registry: tokenRegistry.host, repository: 'test/tok', digest: single.top.digest })).bytes, single.topBytes);
    const layer = single.images[0]!.layers[1]!;
    const blob = await c.blob({ registry: tokenRegistry.host, repository: 'test/tok' }, layer.digest);
    assert.equal(sha256(await collect(blob.stream)), layer.digest);
    assert.deepEqual(await c.tags({ registry: tokenRegistry.host, repository: 'test/tok' }), { name: 'test/tok', tags: ['v1'] });
    assert.deepEqual(tokens.requests, [{ service: 'kontain-test-registry', scopes: ['repository:test/tok:pull'], user: 'alice', status: 200 }]);
  });

  test('an anonymous token without access ends in 401', async () => {
    await assert.rejects(client().getManifest(`${tokenRegistry.host}/test/tok:v1`), upstreamError({ status: 401, code: 'UNAUTHORIZED' }));
  });

  test('wrong credentials: the token server says 401', async () => {
    const c = client({ dockerConfigPath: await dockerConfig({ [tokenRegistry.host]: { username: alice.username, password: 'nope' } }) });
    // The operator's user name is never part of what a client may be told.
    await assert.rejects(c.resolve(`${tokenRegistry.host}/test/tok:v1`), (err: unknown) => {
      assert.ok(err instanceof UpstreamError && err.status === 401, String(err));
      assert.match(err.message, /token server .* answered 401 to kontain's configured credentials/);
      assert.doesNotMatch(err.message, new RegExp(alice.username));
      return true;
    });
  });
});

describe('corrupted content in the upstream', { timeout: 60_000 }, () => {
  let corrupt: WrittenLayout;
  before(async () => {
    // Layers of their own, so breaking them on disk touches no other test's blobs.
    corrupt = await writeOciLayout(await layoutDir(), 'v1', [
      { layers: [await tarLayer({ a: randomBytes(50_000) }), await tarLayer({ b: randomBytes(50_000) })] },
    ]);
    cleanups.push(() => rm(corrupt.dir, { recursive: true, force: true }));
    await pushOciLayout(corrupt, `${plain.host}/test/corrupt:v1`);
  });

  test('a flipped byte on disk makes the stream error with a digest mismatch', async () => {
    const layer = corrupt.images[0]!.layers[0]!;
    const file = plain.blobDataPath(layer.digest);
    const data = await readFile(file);
    data[data.length >> 1] ^= 0xff;
    await writeFile(file, data);
    const blob = await client().blob({ registry: plain.host, repository: 'test/corrupt' }, layer.digest, { size: layer.size });
    let ended = false;
    blob.stream.on('end', () => (ended = true));
    await assert.rejects(collect(blob.stream), upstreamError({ code: 'DIGEST_INVALID', message: new RegExp(`bad content for blob ${layer.digest}.*digest mismatch`) }));
    assert.equal(ended, false);
  });

  test('a truncated blob is refused for its size', async () => {
    const layer = corrupt.images[0]!.layers[1]!;
    await truncate(plain.blobDataPath(layer.digest), 1000);
    const c = client();
    await assert.rejects(
      c.blob({ registry: plain.host, repository: 'test/corrupt' }, layer.digest, { size: layer.size }),
      upstreamError({ code: 'SIZE_INVALID', message: /sent 1000 bytes .* expected/ }),
    );
    // Without a size to hold it to, the digest still catches it.
    const blob = await c.blob({ registry: plain.host, repository: 'test/corrupt' }, layer.digest);
    await assert.rejects(collect(blob.stream), upstreamError({ code: 'DIGEST_INVALID' }));
  });
});

describe('a pull-through registry (proxy mode)', { timeout: 60_000 }, () => {
  test('serves the upstream image through it', async () => {
    const cache = await startUpstreamRegistry({ proxy: { remoteUrl: plain.url } });
    cleanups.push(() => cache.stop());
    const c = client({ insecureRegistries: [cache.host] });
    assert.equal((await c.resolve(`${cache.host}/test/img:multi`)).digest, multi.top.digest);
    const layer = multi.images[0]!.layers[0]!;
    const blob = await c.blob({ registry: cache.host, repository: 'test/img' }, layer.digest, { size: layer.size });
    assert.equal(sha256(await collect(blob.stream)), layer.digest);
    await cache.stop();
  });
});
