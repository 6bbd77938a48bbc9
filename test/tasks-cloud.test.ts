import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/server/logging.js';
import { startServer, type RunningServer } from '../src/server/serve.js';
import { startFakeCloudTasks, type FakeCloudTasks } from './support/fake-cloud-tasks.js';
import { registryError, request, type HttpResult } from './support/http.js';
import { freePort } from './support/upstream-registry.js';
import { pullWaitImage } from './support/wait-image.js';

const QUEUE = 'projects/test-project/locations/us-central1/queues/kontain';
const SERVICE_ACCOUNT = 'kontain-tasks@test-project.iam.gserviceaccount.com';
const SECRET = 'a-shared-secret-of-some-length';
const KID = 'test-key-1';
const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
/** A well-formed wait payload whose placeholder does not exist: the handler accepts it and does nothing. */
const STALE_PAYLOAD = JSON.stringify({ key: 'nothing:1s', readyAt: '2020-01-01T00:00:00.000Z', family: 'oci' });

interface CloudServer extends RunningServer {
  url: string;
  address: string;
  storeDir: string;
}

let fake: FakeCloudTasks;
let otherKey: KeyObject;
let oidcServer: CloudServer;
let secretServer: CloudServer;
let work: string;

async function startCloudKontain(env: Record<string, string>, publicPem: string): Promise<CloudServer> {
  const port = await freePort();
  const storeDir = await mkdtemp(path.join(tmpdir(), 'kontain-tasks-cloud-'));
  const url = `http://127.0.0.1:${port}`;
  const config = loadConfig({
    PORT: String(port),
    KONTAIN_LOG_LEVEL: 'silent',
    KONTAIN_STORE: storeDir,
    KONTAIN_TASKS: QUEUE,
    KONTAIN_TASKS_SERVICE_URL: url,
    KONTAIN_CLOUD_TASKS_ENDPOINT: fake.endpoint,
    ...env,
  });
  const running = await startServer(config, createLogger(config.logLevel), '127.0.0.1', { tasks: { tokenCerts: { [KID]: publicPem } } });
  return { ...running, url, address: `127.0.0.1:${port}`, storeDir };
}

before(async () => {
  const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  fake = await startFakeCloudTasks({ privateKey: keys.privateKey, kid: KID, backoffMs: 100 });
  const publicPem = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  oidcServer = await startCloudKontain({ KONTAIN_TASKS_SERVICE_ACCOUNT: SERVICE_ACCOUNT }, publicPem);
  secretServer = await startCloudKontain({ KONTAIN_TASKS_SECRET: SECRET }, publicPem);
  work = await mkdtemp(path.join(tmpdir(), 'kontain-tasks-cloud-test-'));
});

after(async () => {
  for (const s of [oidcServer, secretServer]) {
    if (!s) continue;
    await s.close();
    await rm(s.storeDir, { recursive: true, force: true });
  }
  await fake?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function postTask(server: CloudServer, name: string, headers: Record<string, string>, body = STALE_PAYLOAD): Promise<HttpResult> {
  return request(`${server.url}/_tasks/${name}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
}

function bearer(token: string): Record<string, string> {
  return { Authorization: `Bearer ${token}` };
}

/** 10 layers of 100 random bytes, pulled with skopeo. */

test('wait on Cloud Tasks: one HTTP task with an OIDC token, delivered to /_tasks/wait at its time, then the image', async () => {
  const first = await request(`${oidcServer.url}/v2/wait/c/manifests/1s`, { headers: ACCEPT });
  assert.equal(first.status, 404);
  assert.match(registryError(first).message, /ready at/);
  assert.equal(first.headers['retry-after'], '1');
  const ours = () => [...fake.tasks.values()].filter((t) => t.url === `${oidcServer.url}/_tasks/wait`);
  assert.equal(ours().length, 1);
  const task = ours()[0]!;
  assert.deepEqual(task.oidc, { serviceAccountEmail: SERVICE_ACCOUNT, audience: oidcServer.url });
  assert.equal(task.headers['X-Kontain-Task-Secret'], undefined, 'no secret configured, none sent');
  assert.equal(JSON.parse(task.body.toString()).key, 'c:1s');
  assert.ok(Math.abs(task.scheduleTime.getTime() - Date.now() - 1000) < 1000, task.scheduleTime.toISOString());

  const creates = fake.creates.length;
  const second = await request(`${oidcServer.url}/v2/wait/c/manifests/1s`, { headers: ACCEPT });
  assert.equal(second.status, 404);
  assert.equal(fake.creates.length, creates, 'a pull while waiting creates no task');

  await until('delivery', () => fake.deliveries.some((d) => d.task === task.name && d.status === 204));
  const delivery = fake.deliveries.find((d) => d.task === task.name)!;
  assert.ok(delivery.withToken);
  assert.equal(delivery.status, 204, 'accepted on the first attempt');
  assert.ok(delivery.at.getTime() >= task.scheduleTime.getTime());
  await pullWaitImage(oidcServer.address, 'wait/c:1s', path.join(work, 'c'));
});

test('wait on Cloud Tasks with the shared secret instead of a token', async () => {
  assert.equal((await request(`${secretServer.url}/v2/wait/s/manifests/1s`, { headers: ACCEPT })).status, 404);
  const task = [...fake.tasks.values()].find((t) => t.url === `${secretServer.url}/_tasks/wait`)!;
  assert.equal(task.oidc, undefined);
  assert.equal(task.headers['X-Kontain-Task-Secret'], SECRET);
  await until('delivery', () => fake.deliveries.some((d) => d.task === task.name && d.status === 204));
  const res = await request(`${secretServer.url}/v2/wait/s/manifests/1s`, { headers: ACCEPT });
  assert.equal(res.status, 200, res.body.toString());
  assert.equal((JSON.parse(res.body.toString()) as { layers: unknown[] }).layers.length, 10);
});

test('/_tasks refuses callers without credentials (401) and with bad ones (403), with JSON bodies', async () => {
  const refused = async (res: HttpResult, status: number, code: string, message?: RegExp) => {
    assert.equal(res.status, status, res.body.toString());
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const error = registryError(res);
    assert.equal(error.code, code);
    if (message) assert.match(error.message, message);
  };
  const now = Math.floor(Date.now() / 1000);
  const good = { aud: oidcServer.url, email: SERVICE_ACCOUNT };

  const none = await postTask(oidcServer, 'wait', {});
  await refused(none, 401, 'UNAUTHORIZED', /ID token/);
  assert.equal(none.headers['www-authenticate'], 'Bearer');
  await refused(await postTask(oidcServer, 'wait', bearer('not-a-jwt')), 403, 'DENIED');
  await refused(await postTask(oidcServer, 'wait', bearer(fake.signToken({ ...good, aud: 'https://elsewhere.example' }))), 403, 'DENIED');
  await refused(await postTask(oidcServer, 'wait', bearer(fake.signToken({ ...good, email: 'someone@else.iam.gserviceaccount.com' }))), 403, 'DENIED', /not the task service account/);
  await refused(await postTask(oidcServer, 'wait', bearer(fake.signToken({ ...good, iat: now - 7200, exp: now - 3600 }))), 403, 'DENIED');
  await refused(await postTask(oidcServer, 'wait', bearer(fake.signToken({ ...good, iss: 'https://evil.example' }))), 403, 'DENIED');
  // Signed with a key the server does not trust, under the trusted key id.
  const forged = fake.signToken(good).split('.').slice(0, 2).join('.');
  const { createSign } = await import('node:crypto');
  const forgedToken = `${forged}.${createSign('RSA-SHA256').update(forged).sign(otherKey).toString('base64url')}`;
  await refused(await postTask(oidcServer, 'wait', bearer(forgedToken)), 403, 'DENIED');
  // This server has no secret: the header proves nothing.
  await refused(await postTask(oidcServer, 'wait', { 'X-Kontain-Task-Secret': SECRET }), 403, 'DENIED');

  // A valid token is accepted (the stale payload makes nothing, successfully).
  assert.equal((await postTask(oidcServer, 'wait', bearer(fake.signToken(good)))).status, 204);

  // The secret-only server: the secret is accepted, a wrong one or any token is not.
  await refused(await postTask(secretServer, 'wait', {}), 401, 'UNAUTHORIZED');
  await refused(await postTask(secretServer, 'wait', { 'X-Kontain-Task-Secret': 'wrong-secret-of-some-length' }), 403, 'DENIED');
  await refused(await postTask(secretServer, 'wait', bearer(fake.signToken({ aud: secretServer.url, email: SERVICE_ACCOUNT }))), 403, 'DENIED');
  assert.equal((await postTask(secretServer, 'wait', { 'X-Kontain-Task-Secret': SECRET })).status, 204);
});

test('/_tasks: unknown task names are 404, handler failures 500 (so Cloud Tasks retries)', async () => {
  const auth = { 'X-Kontain-Task-Secret': SECRET };
  const unknown = await postTask(secretServer, 'nope', auth);
  assert.equal(unknown.status, 404);
  const failed = await postTask(secretServer, 'wait', auth, '{"not":"a wait payload"}');
  assert.equal(failed.status, 500);
  assert.equal(registryError(failed).code, 'UNKNOWN');
  const notJson = await postTask(secretServer, 'wait', auth, '{');
  assert.equal(notJson.status, 400);
});

test('enqueue with the same dedupe key twice: Cloud Tasks answers ALREADY_EXISTS, which is a no-op', async () => {
  const payload = { key: 'dedupe:1h', readyAt: new Date(Date.now() + 3600_000).toISOString(), family: 'oci' as const };
  assert.deepEqual(await oidcServer.tasks.enqueue('wait', payload, 3600, { dedupeKey: 'same' }), { created: true });
  assert.deepEqual(await oidcServer.tasks.enqueue('wait', payload, 3600, { dedupeKey: 'same' }), { created: false });
  const attempts = fake.creates.filter((c) => c.name.endsWith('-wait') && c.name === fake.creates.at(-1)!.name);
  assert.deepEqual(attempts.map((c) => c.status), [200, 409]);
});
