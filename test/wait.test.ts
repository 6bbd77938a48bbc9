import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { registryError, request, type HttpResult } from './support/http.js';
import { startFakeGcs } from './support/fake-gcs.js';
import type { ContentStore } from '../src/content/store.js';
import { pullWaitImage } from './support/wait-image.js';

const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' };
let server: TestServer;
let work: string;
const extraServers: TestServer[] = [];
const extraDirs: string[] = [];

before(async () => {
  server = await startKontain();
  work = await mkdtemp(path.join(tmpdir(), 'kontain-wait-test-'));
});
after(async () => {
  for (const s of extraServers) await s.stop();
  await server.stop();
  for (const dir of [work, ...extraDirs]) await rm(dir, { recursive: true, force: true });
});

/** Stops a server started by a test, and forgets it so `after` does not stop it again. */
async function stopExtra(target: TestServer): Promise<void> {
  extraServers.splice(extraServers.indexOf(target), 1);
  await target.stop();
}

const getManifest = (target: TestServer, repo: string, reference: string): Promise<HttpResult> =>
  request(`${target.url}/v2/${repo}/manifests/${reference}`, { headers: ACCEPT });

async function pendingTasks(store: ContentStore): Promise<string[]> {
  const names: string[] = [];
  for await (const { name } of store.list('tasks/')) names.push(name);
  return names;
}

/** Polls until `check` holds, at most `ms`. */
async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A "not ready" answer: 404 MANIFEST_UNKNOWN saying when, with a matching Retry-After. */
function assertNotReady(res: HttpResult, maxSeconds: number): Date {
  assert.equal(res.status, 404, res.body.toString());
  const error = registryError(res);
  assert.equal(error.code, 'MANIFEST_UNKNOWN');
  const match = /ready at (\S+) \(in (\d+) s\)/.exec(error.message);
  assert.ok(match, error.message);
  const readyAt = new Date(match[1]!);
  assert.ok(!Number.isNaN(readyAt.getTime()), match[1]);
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= maxSeconds, `Retry-After ${res.headers['retry-after']}`);
  assert.equal(retryAfter, Number(match[2]));
  return readyAt;
}


test('wait/x:1s: "not ready" with the time until ready, one task however often pulled, then the image', async () => {
  const first = await getManifest(server, 'wait/x', '1s');
  const readyAt = assertNotReady(first, 1);
  assert.ok(readyAt.getTime() - Date.now() <= 1000 && readyAt.getTime() - Date.now() > -500, readyAt.toISOString());
  assert.equal((await pendingTasks(server.store)).length, 1);

  const second = await getManifest(server, 'wait/x', '1s');
  assert.equal(assertNotReady(second, 1).getTime(), readyAt.getTime(), 'the same promise, not a new wait');
  assert.equal((await pendingTasks(server.store)).length, 1, 'still one task');
  // HEAD gets the same answer without a body.
  const head = await request(`${server.url}/v2/wait/x/manifests/1s`, { method: 'HEAD', headers: ACCEPT });
  assert.equal(head.status, 404);
  assert.ok(head.headers['retry-after']);

  await until('the wait task to run', async () => (await pendingTasks(server.store)).length === 0);
  assert.ok(Date.now() >= readyAt.getTime() - 50, 'not before its time');
  const digest = await pullWaitImage(server.address, 'wait/x:1s', path.join(work, 'x'));

  // The same image by tag and by digest, again and again.
  const byTag = await getManifest(server, 'wait/x', '1s');
  assert.equal(byTag.status, 200);
  assert.equal(byTag.headers['docker-content-digest'], digest);
  const byDigest = await getManifest(server, 'wait/x', digest);
  assert.equal(byDigest.status, 200);
  assert.equal('sha256:' + createHash('sha256').update(byDigest.body).digest('hex'), digest);
  assert.equal((await pendingTasks(server.store)).length, 0, 'serving the image made no task');

  // Another tag is another wait.
  assertNotReady(await getManifest(server, 'wait/x', '2s'), 2);
});

test('a Docker-only client and then an OCI-only client get the same wait image, each in its own media types', async () => {
  const docker = { Accept: 'application/vnd.docker.distribution.manifest.v2+json' };
  const oci = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
  const pull = (headers: Record<string, string>) => request(`${server.url}/v2/wait/fam/manifests/1s`, { headers });
  assertNotReady(await pull(docker), 1);
  await until('the wait task to run', async () => (await pendingTasks(server.store)).length === 0);
  const first = await pull(docker);
  assert.equal(first.status, 200, first.body.toString());
  assert.equal(first.headers['content-type'], docker.Accept);
  const second = await pull(oci);
  assert.equal(second.status, 200, second.body.toString());
  assert.equal(second.headers['content-type'], oci.Accept);
  type Manifest = { mediaType: string; config: { mediaType: string; digest: string }; layers: Array<{ mediaType: string; digest: string }> };
  const [d, o] = [first, second].map((res) => JSON.parse(res.body.toString()) as Manifest);
  assert.equal(o!.mediaType, oci.Accept);
  assert.equal(o!.config.mediaType, 'application/vnd.oci.image.config.v1+json');
  assert.equal(o!.config.digest, d!.config.digest, 'the same config');
  assert.deepEqual(o!.layers.map((l) => l.digest), d!.layers.map((l) => l.digest), 'the same layers');
  assert.ok(o!.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip'));
  // Each form is served by its digest too, and the Docker client still gets its own.
  const byDigest = await request(`${server.url}/v2/wait/fam/manifests/${second.headers['docker-content-digest']}`, { headers: oci });
  assert.equal(byDigest.status, 200);
  assert.equal((await pull(docker)).headers['docker-content-digest'], first.headers['docker-content-digest']);
});

test('a server stopped before the due time and restarted after it serves the image with no new task', async () => {
  const storeDir = await mkdtemp(path.join(tmpdir(), 'kontain-wait-restart-'));
  extraDirs.push(storeDir);
  const a = await startKontain({ KONTAIN_STORE: storeDir });
  extraServers.push(a);
  assertNotReady(await getManifest(a, 'wait/r', '1s'), 1);
  assert.equal((await pendingTasks(a.store)).length, 1);
  await stopExtra(a);
  await new Promise((r) => setTimeout(r, 1300)); // now overdue, with no server running

  const b = await startKontain({ KONTAIN_STORE: storeDir });
  extraServers.push(b);
  // The overdue task runs at start, with no pull to prompt it.
  await until('the overdue task to run after restart', async () => (await pendingTasks(b.store)).length === 0);
  const res = await getManifest(b, 'wait/r', '1s');
  assert.equal(res.status, 200, res.body.toString());
  await pullWaitImage(b.address, 'wait/r:1s', path.join(work, 'r'));
  assert.equal((await pendingTasks(b.store)).length, 0, 'no new task');
});

test('the embedded queue keeps its tasks in a GCS store too, across a restart', async () => {
  const gcs = await startFakeGcs();
  try {
    const env = { KONTAIN_STORE: 'gs://kontain-test/wait', KONTAIN_GCS_ENDPOINT: gcs.endpoint, KONTAIN_GCS_URL_MODE: 'none' };
    const a = await startKontain(env);
    extraServers.push(a);
    assertNotReady(await getManifest(a, 'wait/g', '500ms'), 1);
    assert.deepEqual((await pendingTasks(a.store)).length, 1);
    await stopExtra(a);
    await new Promise((r) => setTimeout(r, 700));
    const b = await startKontain(env);
    extraServers.push(b);
    await until('the overdue task to run after restart', async () => (await pendingTasks(b.store)).length === 0);
    const res = await getManifest(b, 'wait/g', '500ms');
    assert.equal(res.status, 200, res.body.toString());
    assert.equal((JSON.parse(res.body.toString()) as { layers: unknown[] }).layers.length, 10);
    await stopExtra(b);
  } finally {
    await gcs.close();
  }
});

test('latest waits 10 s; more than an hour is refused with the limit in the message; non-durations explained', async () => {
  const latest = await getManifest(server, 'wait/l', 'latest');
  const readyAt = assertNotReady(latest, 10);
  assert.ok(readyAt.getTime() - Date.now() > 8000);

  const tasksBefore = (await pendingTasks(server.store)).length;
  const tooLong = await getManifest(server, 'wait/y', '2h');
  assert.equal(tooLong.status, 404);
  const error = registryError(tooLong);
  assert.equal(error.code, 'MANIFEST_UNKNOWN');
  assert.match(error.message, /longer than the limit of 1h/);
  assert.equal(tooLong.headers['retry-after'], undefined);

  const notDuration = await getManifest(server, 'wait/y', 'soon');
  assert.equal(notDuration.status, 404);
  assert.match(registryError(notDuration).message, /not a duration.*1m30s/);
  assert.equal((await pendingTasks(server.store)).length, tasksBefore, 'refused tags made no task');
});
