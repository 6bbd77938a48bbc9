/**
 * The fast entry (src/server/fast-entry.ts) answers the base route and manifest GET/HEAD
 * in front of Express.
 * These tests ask one server the same questions through that entry and through the Express
 * app alone (a second listener on the same app, store and logger), and require the same
 * status line, headers (Date aside, in the same order), body and request log line, and
 * that the entry answered without Express while other routes still reach Express.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/server/logging.js';
import { startServer, type RunningServer } from '../src/server/serve.js';
import { MediaType } from '../src/oci/mediatypes.js';
import { ManifestServer } from '../src/registry/manifests.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from './support/upstream-images.js';
import { skopeoCopy } from './support/tools.js';
import { until as poll } from './support/kontain-process.js';

const ALL = [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList].join(', ');
const USER_AGENT = 'kontain-fast-entry-test';

let work: string;
let upstream: UpstreamRegistry;
let kontain: RunningServer;
let expressAlone: http.Server;
let single: WrittenLayout;
let multi: WrittenLayout;
let mirrorRepo: string;
/** Parsed log lines, in order. */
const lines: Array<Record<string, unknown>> = [];
/** Requests the Express app has handled. */
let expressCalls = 0;
/** URLs ManifestServer.serve was asked for, in order: a manifest answered without it was a ready answer. */
const served: string[] = [];
let ports: { entry: number; express: number };

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-fast-entry-'));
  upstream = await startUpstreamRegistry();
  single = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'hello.txt': 'hello\n' })] }]);
  await pushOciLayout(single, `${upstream.host}/lib/app:v1`);
  multi = await writeOciLayout(await layoutDir(), 'v1', [
    { layers: [await tarLayer({ arch: 'amd64\n' })], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [await tarLayer({ arch: 'arm64\n' })], platform: { os: 'linux', architecture: 'arm64' } },
  ]);
  await pushOciLayout(multi, `${upstream.host}/lib/multi:v1`);
  mirrorRepo = `mirror/${upstream.host.replace(':', '-')}/lib`;
  // A static tree with one skopeo dir: copy.
  const root = path.join(work, 'tree');
  await mkdir(path.join(root, 'app', 'v1'), { recursive: true });
  await skopeoCopy(`oci:${single.dir}:v1`, `dir:${path.join(root, 'app', 'v1')}`, ['--quiet']);

  const config = loadConfig({
    PORT: '0',
    KONTAIN_STORE: path.join(work, 'store'),
    KONTAIN_INSECURE_REGISTRIES: upstream.host,
    KONTAIN_STATIC_ROOT: root,
    KONTAIN_LOG_LEVEL: 'info',
  });
  const log = createLogger(config.logLevel, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const serve = ManifestServer.prototype.serve;
  ManifestServer.prototype.serve = function (this: ManifestServer, ...args: Parameters<typeof serve>) {
    const req = args[0] as (typeof args)[0] & { originalUrl?: string };
    served.push(req.originalUrl ?? req.url!);
    return serve.apply(this, args);
  };
  kontain = await startServer(config, log, '127.0.0.1');
  // Express's app function looks up app.handle on every call: counting there sees every request it gets.
  const app = kontain.app as typeof kontain.app & { handle: (...args: unknown[]) => unknown };
  const handle = app.handle.bind(app);
  app.handle = (...args: unknown[]) => {
    expressCalls++;
    return handle(...args);
  };
  expressAlone = http.createServer(kontain.app);
  await new Promise<void>((resolve) => expressAlone.listen(0, '127.0.0.1', resolve));
  ports = { entry: kontain.port, express: (expressAlone.address() as AddressInfo).port };
});

after(async () => {
  await new Promise<void>((resolve) => expressAlone.close(() => resolve()));
  await kontain?.close();
  await upstream?.stop();
  await rm(work, { recursive: true, force: true });
});

interface Answer {
  status: number;
  statusMessage: string;
  /** Raw header lines in order, Date left out. */
  headers: Array<[string, string]>;
  body: string;
  log: Record<string, unknown>;
}

/** One request on a port: the answer, and the request log line the server wrote for it. */
async function ask(port: number, method: 'GET' | 'HEAD', urlPath: string, headers: Record<string, string>): Promise<Answer> {
  const logged = lines.length;
  const answer = await new Promise<Omit<Answer, 'log'>>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers: { 'user-agent': USER_AGENT, ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const pairs: Array<[string, string]> = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          if (res.rawHeaders[i]!.toLowerCase() !== 'date') pairs.push([res.rawHeaders[i]!, res.rawHeaders[i + 1]!]);
        }
        resolve({ status: res.statusCode!, statusMessage: res.statusMessage!, headers: pairs, body: Buffer.concat(chunks).toString('latin1') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  // The line is written when the response finishes on the server: wait for it, in order.
  const line = await until(() => lines.slice(logged).find((l) => (l.httpRequest as { requestUrl?: string } | undefined)?.requestUrl === urlPath));
  const { time: _time, durationMs: _duration, ...rest } = line;
  const { latency: _latency, ...httpRequest } = rest.httpRequest as Record<string, unknown>;
  return { ...answer, log: { ...rest, httpRequest } };
}

async function until<T>(find: () => T | undefined): Promise<T> {
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * Asks through the entry and through Express alone (after one warm-up request, so both
 * see the same cached state) and requires equal answers; returns the entry's.
 */
async function same(method: 'GET' | 'HEAD', urlPath: string, headers: Record<string, string> = { accept: ALL }): Promise<Answer> {
  await ask(ports.entry, method, urlPath, headers);
  const before = expressCalls;
  const viaEntry = await ask(ports.entry, method, urlPath, headers);
  assert.equal(expressCalls, before, `${method} ${urlPath} was answered by the fast entry, without Express`);
  const viaExpress = await ask(ports.express, method, urlPath, headers);
  assert.equal(expressCalls, before + 1, `${method} ${urlPath} reached Express on the Express-only listener`);
  assert.deepEqual(viaEntry, viaExpress, `${method} ${urlPath}: the fast entry and Express answer alike`);
  return viaEntry;
}

const sha256 = (bytes: Buffer) => 'sha256:' + createHash('sha256').update(bytes).digest('hex');
const header = (answer: Answer, name: string) => answer.headers.find(([key]) => key.toLowerCase() === name)?.[1];

test('mirror by tag and by digest, GET and HEAD: same status, headers, body and log line', async () => {
  const digest = single.top.digest;
  for (const method of ['GET', 'HEAD'] as const) {
    const byTag = await same(method, `/v2/${mirrorRepo}/app/manifests/v1`);
    assert.equal(byTag.status, 200);
    assert.equal(header(byTag, 'docker-content-digest'), digest);
    assert.equal(header(byTag, 'content-type'), MediaType.ociManifest);
    assert.equal(header(byTag, 'content-length'), String(single.topBytes.length));
    assert.equal(header(byTag, 'docker-distribution-api-version'), 'registry/2.0');
    assert.equal(header(byTag, 'etag'), `"${digest}"`);
    assert.equal(byTag.body, method === 'GET' ? single.topBytes.toString('latin1') : '');
    assert.deepEqual(
      { service: byTag.log.service, repository: byTag.log.repository, reference: byTag.log.reference, bytes: byTag.log.bytes },
      { service: 'mirror', repository: `${upstream.host.replace(':', '-')}/lib/app`, reference: 'v1', bytes: method === 'GET' ? single.topBytes.length : 0 },
    );
    const byDigest = await same(method, `/v2/${mirrorRepo}/app/manifests/${digest}`);
    assert.equal(byDigest.status, 200);
    assert.equal(header(byDigest, 'docker-content-digest'), digest);
  }
});

test('an index by tag to a client that takes only image manifests is its amd64 image; If-None-Match is 304', async () => {
  const amd64 = multi.images[0]!.manifest.digest;
  const negotiated = await same('GET', `/v2/${mirrorRepo}/multi/manifests/v1`, { accept: MediaType.ociManifest });
  assert.equal(negotiated.status, 200);
  assert.equal(header(negotiated, 'docker-content-digest'), amd64);
  const index = await same('GET', `/v2/${mirrorRepo}/multi/manifests/v1`);
  assert.equal(header(index, 'docker-content-digest'), multi.top.digest);
  const unchanged = await same('GET', `/v2/${mirrorRepo}/multi/manifests/v1`, { accept: ALL, 'if-none-match': `"${multi.top.digest}"` });
  assert.equal(unchanged.status, 304);
});

test('wrong Accept, unknown manifest and an unlinked repository: the same error status, reason and body', async () => {
  const wrongAccept = await same('GET', `/v2/${mirrorRepo}/app/manifests/v1`, { accept: MediaType.dockerManifest });
  assert.equal(wrongAccept.status, 404);
  assert.equal((JSON.parse(wrongAccept.body) as { errors: Array<{ code: string }> }).errors[0]!.code, 'MANIFEST_UNKNOWN');
  assert.match(wrongAccept.statusMessage, /Accept header takes none/);
  const wrongAcceptHead = await same('HEAD', `/v2/${mirrorRepo}/app/manifests/v1`, { accept: MediaType.dockerManifest });
  assert.equal(wrongAcceptHead.status, 404);
  assert.equal(wrongAcceptHead.body, '');

  // random makes an image per tag; its digest is served under that repository only.
  const made = await ask(ports.entry, 'GET', '/v2/random/fast/one/manifests/1x10', { accept: ALL });
  const digest = header(made, 'docker-content-digest')!;
  const linked = await same('GET', `/v2/random/fast/one/manifests/${digest}`);
  assert.equal(linked.status, 200);
  const unlinked = await same('GET', `/v2/random/fast/other/manifests/${digest}`);
  assert.equal(unlinked.status, 404);
  assert.equal((JSON.parse(unlinked.body) as { errors: Array<{ code: string }> }).errors[0]!.code, 'MANIFEST_UNKNOWN');
  const unknown = await same('HEAD', `/v2/random/fast/one/manifests/sha256:${'0'.repeat(64)}`);
  assert.equal(unknown.status, 404);
});

test('static host by tag and by digest, and forwarded client headers, are logged alike', async () => {
  const forwarded = { accept: ALL, 'x-forwarded-for': ' 203.0.113.9 , 10.0.0.1', 'x-forwarded-proto': 'https', 'x-cloud-trace-context': 'abc123/1;o=1' };
  const byTag = await same('GET', '/v2/static/app/manifests/v1', forwarded);
  assert.equal(byTag.status, 200);
  assert.equal((byTag.log.httpRequest as { remoteIp?: string }).remoteIp, '203.0.113.9');
  assert.equal(byTag.log['logging.googleapis.com/trace'], 'abc123');
  const digest = header(byTag, 'docker-content-digest')!;
  const byDigest = await same('HEAD', `/v2/static/app/manifests/${digest}`);
  assert.equal(byDigest.status, 200);
  const missing = await same('GET', '/v2/static/app/manifests/v2');
  assert.equal(missing.status, 404);
});

test('the base route, GET and HEAD, with and without its slash or a query: same answer and log line as Express', async () => {
  for (const [method, urlPath] of [['GET', '/v2/'], ['HEAD', '/v2/'], ['GET', '/v2'], ['GET', '/v2/?probe=1']] as const) {
    const answer = await same(method, urlPath, {});
    assert.equal(answer.status, 200);
    assert.equal(header(answer, 'docker-distribution-api-version'), 'registry/2.0');
    assert.equal(header(answer, 'content-type'), 'application/json');
    assert.equal(answer.body, method === 'GET' ? '{}' : '');
    assert.equal(answer.log.service, undefined);
  }
});

test('kept static manifests are ready answers, alike to what Express answers: GET and HEAD, by tag and digest', async () => {
  const byTag = '/v2/static/app/manifests/v1';
  await untilReady(ports.entry, byTag, { accept: ALL });
  for (const method of ['GET', 'HEAD'] as const) {
    const before = served.length;
    const tagged = await same(method, byTag, { accept: ALL });
    assert.equal(tagged.status, 200);
    const digest = header(tagged, 'docker-content-digest')!;
    const byDigest = await same(method, `/v2/static/app/manifests/${digest}`, { accept: MediaType.dockerManifest });
    assert.equal(byDigest.status, 200);
    assert.equal(header(byDigest, 'docker-content-digest'), digest);
    // Only the Express-alone requests reached serve(): the entry's four were ready answers.
    assert.deepEqual(served.slice(before), [byTag, `/v2/static/app/manifests/${digest}`]);
  }
  // What a ready answer cannot decide goes the whole way, alike, also right after the
  // same URL was answered ready: a type the client does not take, and If-None-Match.
  const before = served.length;
  const refused = await same('GET', byTag, { accept: 'application/x-nothing' });
  assert.equal(refused.status, 404);
  const tagged = await same('GET', byTag);
  const unchanged = await same('GET', byTag, { accept: ALL, 'if-none-match': header(tagged, 'etag')! });
  assert.equal(unchanged.status, 304);
  // Three each for the refused and the conditional request; only Express's for the plain one.
  assert.deepEqual(served.slice(before), Array<string>(7).fill(byTag));
});

/**
 * Asks until the entry answers `urlPath` without ManifestServer.serve: files changed in the
 * last two seconds are read again on every request (StaticTree), so a ready answer comes
 * once the tree is older than that. Bounded: fails after 20 s.
 */
async function untilReady(port: number, urlPath: string, headers: Record<string, string>): Promise<Answer> {
  let answer: Answer | undefined;
  await poll(`a ready answer to ${urlPath}`, async () => {
    const before = served.length;
    answer = await ask(port, 'GET', urlPath, headers);
    return served.length === before;
  }, 20_000);
  return answer!;
}

test('a ready answer follows the tree: a tag pointed at another image on disk is served as it is', async () => {
  const tagDir = path.join(work, 'tree', 'retag', 'v1');
  const manifestDigest = async () => sha256(await readFile(path.join(tagDir, 'manifest.json')));
  await mkdir(tagDir, { recursive: true });
  await skopeoCopy(`oci:${single.dir}:v1`, `dir:${tagDir}`, ['--quiet']);
  const urlPath = '/v2/static/retag/manifests/v1';
  const first = await untilReady(ports.entry, urlPath, { accept: ALL });
  const firstDigest = await manifestDigest();
  assert.equal(header(first, 'docker-content-digest'), firstDigest);
  // The answer is remembered now; the tag moves to another image.
  const other = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'other.txt': 'other\n' })] }]);
  await skopeoCopy(`oci:${other.dir}:v1`, `dir:${tagDir}`, ['--quiet']);
  const movedDigest = await manifestDigest();
  assert.notEqual(movedDigest, firstDigest);
  let moved: Answer | undefined;
  await poll(`${urlPath} to answer other than the old manifest`, async () => {
    moved = await ask(ports.entry, 'GET', urlPath, { accept: ALL });
    return header(moved, 'docker-content-digest') !== firstDigest;
  }, 20_000);
  assert.equal(moved!.status, 200);
  assert.equal(header(moved!, 'docker-content-digest'), movedDigest);
  assert.equal(moved!.body, (await readFile(path.join(tagDir, 'manifest.json'))).toString('latin1'));
  // Once ready again, the new answer is the one given, alike to Express's.
  const again = await untilReady(ports.entry, urlPath, { accept: ALL });
  assert.equal(header(again, 'docker-content-digest'), movedDigest);
  assert.deepEqual(await same('GET', urlPath), again);
});

test('long Host and Accept lines (beyond what a kept route holds) are answered alike to Express, again and again', async () => {
  const byTag = '/v2/static/app/manifests/v1';
  const longAccept = [...Array.from({ length: 200 }, (_, i) => `application/x-padding-${i}`), ALL].join(', ');
  const longHost = `${'h'.repeat(1000)}.example`;
  const expected = sha256(await readFile(path.join(work, 'tree', 'app', 'v1', 'manifest.json')));
  for (let i = 0; i < 3; i++) {
    for (const headers of [{ accept: longAccept }, { accept: ALL, host: longHost }] as Array<Record<string, string>>) {
      const answer = await same('GET', byTag, headers);
      assert.equal(answer.status, 200);
      assert.equal(header(answer, 'docker-content-digest'), expected);
    }
  }
  const refused = await same('GET', byTag, { accept: `${'application/x-nothing, '.repeat(200)}application/x-none` });
  assert.equal(refused.status, 404);
});

test('a ready answer is kept for the Host it was given on: the same URL on another host is answered for that host', async () => {
  const config = loadConfig({
    PORT: '0',
    KONTAIN_DOMAIN: 'kontain.test',
    KONTAIN_STORE: path.join(work, 'store-hosts'),
    KONTAIN_STATIC_ROOT: path.join(work, 'tree'),
    KONTAIN_LOG_LEVEL: 'warn',
  });
  const hosted = await startServer(config, createLogger(config.logLevel, { write: () => undefined }), '127.0.0.1');
  try {
    const get = (host: string) =>
      new Promise<{ status: number; digest?: string; body: string }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: hosted.port, path: '/v2/static/app/manifests/v1', headers: { host, accept: ALL }, agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode!, digest: res.headers['docker-content-digest'] as string | undefined, body: Buffer.concat(chunks).toString() }));
        });
        req.on('error', reject);
        req.end();
      });
    const expected = sha256(await readFile(path.join(work, 'tree', 'app', 'v1', 'manifest.json')));
    // On the bare domain the path names the host: static, repository app. On static's
    // own host the repository is static/app, which the tree does not have.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) {
        const byPath = await get('kontain.test');
        assert.equal(byPath.status, 200);
        assert.equal(byPath.digest, expected);
      }
      const byHost = await get('static.kontain.test');
      assert.equal(byHost.status, 404);
      assert.equal((JSON.parse(byHost.body) as { errors: Array<{ code: string }> }).errors[0]!.code, 'NAME_UNKNOWN');
    }
    // Host sent twice (node:http's client will not): node:http takes the first, and so
    // does the entry, not the last one, whose answer is remembered.
    for (let i = 0; i < 3; i++) assert.equal((await get('kontain.test')).status, 200);
    const twice = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(hosted.port, '127.0.0.1', () =>
        socket.write(`GET /v2/static/app/manifests/v1 HTTP/1.1\r\nHost: static.kontain.test\r\nAccept: ${ALL}\r\nHost: kontain.test\r\nConnection: close\r\n\r\n`),
      );
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
      socket.on('error', reject);
    });
    assert.match(twice, /^HTTP\/1\.1 404 /);
    assert.match(twice, /"code":"NAME_UNKNOWN"/);
  } finally {
    await hosted.close();
  }
});

test('static blobs, GET and HEAD, whole, in part and refused: the entry answers them as Express does, without it', async () => {
  const manifest = JSON.parse((await same('GET', '/v2/static/app/manifests/v1')).body) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const layer = manifest.layers[0]!.digest;
  const blobUrl = (digest: string) => `/v2/static/app/blobs/${digest}`;
  const whole = await same('GET', blobUrl(layer), {});
  assert.equal(whole.status, 200);
  assert.equal(sha256(Buffer.from(whole.body, 'latin1')), layer);
  assert.equal(header(whole, 'docker-content-digest'), layer);
  const head = await same('HEAD', blobUrl(manifest.config.digest), {});
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  const part = await same('GET', blobUrl(layer), { range: 'bytes=2-9' });
  assert.equal(part.status, 206);
  assert.equal(part.body, whole.body.slice(2, 10));
  assert.equal(part.log.range, 'bytes=2-9');
  const outside = await same('GET', blobUrl(layer), { range: 'bytes=99999999-' });
  assert.equal(outside.status, 416);
  const unknown = await same('GET', blobUrl(`sha256:${'0'.repeat(64)}`), {});
  assert.equal(unknown.status, 404);
  assert.equal((JSON.parse(unknown.body) as { errors: Array<{ code: string }> }).errors[0]!.code, 'BLOB_UNKNOWN');
  const invalid = await same('GET', blobUrl('sha256:nothex'), {});
  assert.equal(invalid.status, 400);
});

test('everything but the base route, manifest GET/HEAD and static blob GET/HEAD reaches Express: a mirror blob, a bad name, a push', async () => {
  for (const [method, urlPath] of [
    ['POST', '/v2/'],
    ['GET', '/v2//'],
    ['HEAD', `/v2/${mirrorRepo}/app/blobs/${single.images[0]!.config.digest}`],
    ['GET', '/v2/Not_A_Name/manifests/v1'],
    ['GET', '/v2/nosuchhost/x/manifests/v1'],
    ['PUT', `/v2/${mirrorRepo}/app/manifests/v1`],
  ] as const) {
    const before = expressCalls;
    const answer = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: ports.entry, method, path: urlPath, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end();
    });
    assert.ok(answer > 0);
    assert.equal(expressCalls, before + 1, `${method} ${urlPath} went to Express`);
  }
});

test('requests the entry answers are counted in the metrics like those Express answers', async () => {
  const count = async () => {
    const text = (await ask(ports.express, 'GET', '/metrics', {})).body;
    return Number(/^kontain_requests_total\{service="static",status="200"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };
  const before = await count();
  await ask(ports.entry, 'GET', '/v2/static/app/manifests/v1', { accept: ALL });
  await ask(ports.express, 'GET', '/v2/static/app/manifests/v1', { accept: ALL });
  assert.equal(await count(), before + 2);
});
