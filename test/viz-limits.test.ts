/**
 * viz against images built to hurt it: manifests of tens of thousands of layers, digests
 * that used to collide as graph ids, and layers shared in so many orders that Graphviz
 * takes minutes to lay them out. The server runs in a child process, so a frozen server
 * cannot freeze the test that checks it, and its log shows what became of render workers.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http, { type ClientRequest } from 'node:http';
import { MediaType } from '../src/oci/mediatypes.js';
import { MAX_GRAPH_NODES } from '../src/viz/limits.js';
import { request } from './support/http.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServerProcess, type ServerProcess } from './support/server-process.js';
import { pushBlob, putImageManifest, type PushedBlob } from './support/registry-push.js';
import { startUpstreamProxy, type UpstreamProxy } from './support/upstream-proxy.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';

/**
 * An image manifest of `count` layers whose digests differ only in a separator (`x-1`,
 * `x_1`, `x=1`): before layer ids were collision-free, every one of them was given the id
 * of the one before plus `-`, a quadratic loop that froze the server for minutes.
 */
function collidingManifest(count: number): Buffer {
  const separators = ['-', '_', '='];
  const layers = Array.from({ length: count }, (_, i) => ({
    mediaType: MediaType.ociLayerGzip,
    digest: `sha256:x${separators[i % 3]}${Math.floor(i / 3)}`,
    size: 1000 + i,
  }));
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: `sha256:${'c'.repeat(64)}`, size: 2 }, layers }));
}

/**
 * A loopback upstream that serves only manifests (viz reads nothing else): `tag` →
 * bytes. `declareSize: false` leaves Content-Length and the digest out of HEAD answers,
 * so the client has to GET the manifest to learn them. `onServed` is told when a GET body
 * has been written.
 */
function serveManifests(proxy: UpstreamProxy, manifests: Record<string, { bytes: Buffer; declareSize: boolean }>, onServed: (tag: string) => void): void {
  proxy.intercept((req, res) => {
    if (req.url === '/v2/') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
      return true;
    }
    const match = /^\/v2\/many\/layers\/manifests\/([^/]+)$/.exec(req.url ?? '');
    const entry = match && Object.entries(manifests).find(([tag, m]) => tag === match[1] || digestOf(m.bytes) === decodeURIComponent(match[1]!));
    if (!entry) {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'unknown' }] }));
      return true;
    }
    const [tag, { bytes, declareSize }] = entry;
    const headers: Record<string, string | number> = { 'Content-Type': MediaType.ociManifest };
    if (req.method === 'HEAD') {
      if (declareSize) Object.assign(headers, { 'Content-Length': bytes.length, 'Docker-Content-Digest': digestOf(bytes) });
      res.writeHead(200, headers).end();
      return true;
    }
    res.writeHead(200, { ...headers, 'Content-Length': bytes.length, 'Docker-Content-Digest': digestOf(bytes) });
    res.end(bytes, () => onServed(tag));
    return true;
  });
}

const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** A small deterministic generator (mulberry32), so the tangled images are the same every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A GET whose response (if any) is recorded, and which the test can abandon. */
function openRequest(url: string): { req: ClientRequest; answered: () => boolean } {
  let answered = false;
  const req = http.get(url, { agent: false }, (res) => {
    answered = true;
    res.resume();
  });
  req.on('error', () => {});
  return { req, answered: () => answered };
}

/** A server with its own temporary store, removed when it stops. */
async function startVizServer(env: Record<string, string>): Promise<{ server: ServerProcess; stop(): Promise<void> }> {
  const store = await mkdtemp(path.join(tmpdir(), 'kontain-store-'));
  const server = await startServerProcess({ KONTAIN_STORE: store, ...env });
  return {
    server,
    async stop() {
      await server.stop('SIGKILL');
      await rm(store, { recursive: true, force: true });
    },
  };
}

describe('viz: bounded work for hostile images', () => {
  let registry: UpstreamRegistry;
  let hostile: UpstreamProxy;
  let server: ServerProcess;
  let stopServer: (() => Promise<void>) | undefined;
  const served: string[] = [];
  let tangled: string[];

  before(async () => {
    // Twenty images of 60 layers each, drawn in different orders from one pool of 150:
    // few enough nodes and edges for the limits, but Graphviz's layout of so many crossing
    // paths takes minutes, so every render of them is still running when the test acts.
    registry = await startUpstreamRegistry();
    const repository = 'viz/tangled';
    const pool: PushedBlob[] = [];
    for (let i = 0; i < 150; i++) pool.push(await pushBlob(registry.url, repository, randomBytes(64)));
    const config = await pushBlob(registry.url, repository, Buffer.from('{"architecture":"amd64","os":"linux"}'));
    const random = seeded(42);
    tangled = [];
    for (let image = 0; image < 20; image++) {
      const layers: PushedBlob[] = [];
      while (layers.length < 60) {
        const next = pool[Math.floor(random() * pool.length)]!;
        if (!layers.includes(next)) layers.push(next);
      }
      await putImageManifest(registry.url, repository, `t${image}`, config, layers);
      tangled.push(`${registry.host}/${repository}:t${image}`);
    }

    hostile = await startUpstreamProxy();
    serveManifests(
      hostile,
      {
        // About 2 MB: larger than viz reads, smaller than the client's 4 MiB for any manifest.
        declared: { bytes: collidingManifest(20_000), declareSize: true },
        undeclared: { bytes: collidingManifest(20_000), declareSize: false },
        // About 0.5 MB: read, but more distinct layers than a graph may have nodes.
        nodes: { bytes: collidingManifest(5_000), declareSize: true },
      },
      (tag) => served.push(tag),
    );
    ({ server, stop: stopServer } = await startVizServer({
      KONTAIN_INSECURE_REGISTRIES: `${registry.host},${hostile.host}`,
      KONTAIN_LOG_LEVEL: 'debug',
      KONTAIN_VIZ_RENDER_TIMEOUT: '600',
    }));
  });
  after(async () => {
    await stopServer?.();
    await hostile?.stop();
    await registry?.stop();
  });

  test('20,000 layers: 422 naming the manifest limit, unread when the size is declared; /healthz answers meanwhile', { timeout: 120_000 }, async () => {
    const declared = await request(`${server.url}/viz/graph.json?image=${hostile.host}/many/layers:declared`);
    assert.equal(declared.status, 422, declared.body.toString());
    assert.match(declared.body.toString(), /many\/layers:declared: manifest sha256:[0-9a-f]{64} is \d[\d.]* MB; viz reads manifests of at most 1 MiB/);
    assert.ok(!served.includes('declared'), 'a manifest declared too large is not fetched');

    // Undeclared, the manifest is read (the client bounds that at 4 MiB) and then refused.
    // /healthz is asked the moment the upstream has sent it all, while kontain handles it.
    const pending = request(`${server.url}/viz/graph.svg?image=${hostile.host}/many/layers:undeclared`);
    while (!served.includes('undeclared')) await new Promise((resolve) => setImmediate(resolve));
    const health = await request(`${server.url}/healthz`);
    assert.equal(health.status, 200);
    const refused = await pending;
    assert.equal(refused.status, 422, refused.body.toString());
    assert.match(refused.body.toString(), /many\/layers:undeclared: manifest sha256:[0-9a-f]{64} is \d[\d.]* MB; viz reads manifests of at most 1 MiB/);
  });

  test('5,000 layers whose digests used to collide: 422 naming the node limit, on the page too', { timeout: 120_000 }, async () => {
    const res = await request(`${server.url}/viz/graph.json?image=${hostile.host}/many/layers:nodes`);
    assert.equal(res.status, 422, res.body.toString());
    assert.equal(res.body.toString(), `the graph would have more than ${MAX_GRAPH_NODES} nodes (images and distinct layers); viz draws at most ${MAX_GRAPH_NODES}: draw fewer images\n`);
    const page = await request(`${server.url}/viz?images=${encodeURIComponent(`${hostile.host}/many/layers:nodes`)}`);
    assert.equal(page.status, 422);
    assert.match(page.body.toString(), /class="problem"[^>]*>the graph would have more than 1000 nodes/);
  });

  test('a long layout runs in a worker: /healthz answers during it, and a client that leaves terminates the worker', { timeout: 120_000 }, async () => {
    const mark = server.logs.length;
    const query = new URLSearchParams(tangled.map((ref) => ['image', ref]));
    const drawing = openRequest(`${server.url}/viz/graph.svg?${query}`);
    await server.logLine((r) => r.message === 'graph layout running in a worker', mark);

    const health = await request(`${server.url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(drawing.answered(), false, '/healthz answered while the graph was still being laid out');

    drawing.req.destroy();
    await server.logLine((r) => r.message === 'graph render abandoned: the client left; its worker was terminated', mark);
    const stopped = await server.logLine((r) => r.message === 'graph render worker exited', mark);
    assert.equal(stopped.renderWorkers, 0, 'no render worker is left running');

    // A fresh worker draws the next graph.
    const small = await request(`${server.url}/viz/graph.svg?image=${tangled[0]}`);
    assert.equal(small.status, 200, small.body.toString());
    assert.match(small.body.toString(), /<svg/);
  });

  test('a layout that outlasts KONTAIN_VIZ_RENDER_TIMEOUT is abandoned with 422 naming it', { timeout: 120_000 }, async () => {
    const { server: quick, stop } = await startVizServer({ KONTAIN_INSECURE_REGISTRIES: registry.host, KONTAIN_LOG_LEVEL: 'debug', KONTAIN_VIZ_RENDER_TIMEOUT: '1' });
    try {
      const query = new URLSearchParams(tangled.map((ref) => ['image', ref]));
      const res = await request(`${quick.url}/viz/graph.svg?${query}`);
      assert.equal(res.status, 422, res.body.toString());
      assert.equal(res.body.toString(), 'the graph could not be laid out within 1 s (KONTAIN_VIZ_RENDER_TIMEOUT); draw fewer images\n');
      await quick.logLine((r) => r.message === 'graph render abandoned: time limit; its worker was terminated');
      await quick.logLine((r) => r.message === 'graph render worker exited');
    } finally {
      await stop();
    }
  });
});
