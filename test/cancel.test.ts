/**
 * Work stops when its client leaves: random stops generating and deletes what it wrote;
 * a flatten build stops (spool and partial upload removed) once no client waits for it,
 * but goes on while another client waits for the same image. Measured on a child server.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { openRequest, request, registryError } from './support/http.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';
import { diskUsage } from './support/disk-usage.js';
import { craftImage, startContentServer, type ContentServer } from './support/hostile-content.js';
import { tarLayer } from './support/upstream-images.js';
import { startKontain } from './support/kontain.js';

const MB = 1024 * 1024;
let work: string;
let content: ContentServer;
let server: ServerProcess;
let spool: string;
let store: string;
const layers: Record<string, string> = {};

/** Resolves with `promise`, or fails naming `what` after `ms` (so a missing fix fails instead of hanging). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen`)), ms)))]).finally(() => clearTimeout(timer));
}

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-cancel-'));
  const images: Record<string, ReturnType<typeof craftImage>> = {};
  for (const name of ['big/one', 'big/two']) {
    images[`${name}:v1`] = craftImage([gzipSync(await tarLayer({ 'data/random': randomBytes(8 * MB) }), { level: 1 })]);
    layers[name] = JSON.parse(images[`${name}:v1`]!.manifest.toString()).layers[0].digest;
  }
  content = await startContentServer(images);
  spool = await mkdtemp(path.join(work, 'tmp-'));
  store = path.join(work, 'store');
  server = await startServerProcess({ KONTAIN_STORE: store, KONTAIN_INSECURE_REGISTRIES: content.host, KONTAIN_GC_INTERVAL: '0', TMPDIR: spool });
});
after(async () => {
  await server.stop();
  await content.stop();
  await rm(work, { recursive: true, force: true });
});

test('random: a client that leaves stops the generation, and what it wrote is deleted', { timeout: 120_000 }, async () => {
  const pull = openRequest(`http://127.0.0.1:${server.port}/v2/random/x/manifests/20x99999999`);
  // Once generation is under way (bytes on disk), the client leaves.
  while ((await diskUsage(store)) < 20 * MB) await new Promise((resolve) => setTimeout(resolve, 20));
  pull.leave();
  await within(
    server.logLine((line) => String(line.message).startsWith('random: the client left')),
    60_000,
    'the server stopping the generation',
  );
  const left = await diskUsage(store);
  assert.ok(left < 5 * MB, `${Math.round(left / MB)} MB left in the store`);
});

test('viz: a graph of this server\'s own random image stops the generation when the viz client leaves', { timeout: 120_000 }, async () => {
  const before = server.logs.length;
  const ref = `127.0.0.1:${server.port}/random/viz:20x99999999`;
  const page = openRequest(`http://127.0.0.1:${server.port}/viz/graph.json?images=${encodeURIComponent(ref)}`);
  while ((await diskUsage(store)) < 20 * MB) await new Promise((resolve) => setTimeout(resolve, 20));
  page.leave();
  await within(
    server.logLine((line) => String(line.message).startsWith('random: the client left'), before),
    60_000,
    'the server stopping the generation viz asked for',
  );
  const left = await diskUsage(store);
  assert.ok(left < 5 * MB, `${Math.round(left / MB)} MB left in the store`);
});

test('flatten: a build goes on while another client waits, and stops once none does', { timeout: 120_000 }, async () => {
  const url = (name: string) => `http://127.0.0.1:${server.port}/v2/flatten/${content.host.replace(':', '-')}/${name}/manifests/v1`;
  const one = content.holdBack(layers['big/one']!, 4 * MB);
  const a = openRequest(url('big/one'));
  const b = openRequest(url('big/one'));
  await one.sent;
  a.leave();
  // A round trip after the close, so the server has seen A go before the upstream goes on.
  assert.equal((await request(`http://127.0.0.1:${server.port}/healthz`)).status, 200);
  one.release();
  assert.equal(await b.done, 200, 'B still gets the image A left');
  assert.equal(content.blobGets(layers['big/one']!), 1);

  const two = content.holdBack(layers['big/two']!, 4 * MB);
  const c = openRequest(url('big/two'));
  await two.sent;
  assert.ok((await readdir(spool)).some((name) => name.startsWith('kontain-flatten-')), 'the build is spooling');
  c.leave();
  await within(
    server.logLine((line) => String(line.message).startsWith('flatten: no client waits any more') && String(line.upstream).includes('big/two')),
    60_000,
    'the server stopping the build',
  );
  two.release();
  assert.deepEqual(await readdir(spool), [], 'the spool is removed');
  assert.deepEqual(await readdir(path.join(store, '.tmp')).catch(() => []), [], 'no partial upload is left');
});

test('random: an image larger than KONTAIN_RANDOM_MAX_BYTES_AT_ONCE is refused, naming it', async () => {
  const small = await startKontain({ KONTAIN_RANDOM_MAX_BYTES_AT_ONCE: '50000000' });
  try {
    const res = await request(`${small.url}/v2/random/x/manifests/2x30mb`);
    assert.equal(res.status, 422);
    assert.match(registryError(res).message, /at most 50,000,000 at once \(KONTAIN_RANDOM_MAX_BYTES_AT_ONCE\)/);
    assert.equal((await request(`${small.url}/v2/random/x/manifests/1x30mb`)).status, 200);
  } finally {
    await small.stop();
  }
});
