import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../config.js';

const QUEUE = 'projects/my-project/locations/us-central1/queues/kontain';
const cloud = { KONTAIN_TASKS: QUEUE, KONTAIN_TASKS_SERVICE_URL: 'https://kontain-abc-uc.a.run.app/', KONTAIN_TASKS_SERVICE_ACCOUNT: 'tasks@my-project.iam.gserviceaccount.com' };

test('KONTAIN_TASKS unset (or "embedded") is the embedded queue', () => {
  assert.deepEqual(loadConfig({}).tasks, { kind: 'embedded' });
  assert.deepEqual(loadConfig({ KONTAIN_TASKS: 'embedded' }).tasks, { kind: 'embedded' });
});

test('a Cloud Tasks queue with its service URL, account, audience default and endpoint', () => {
  assert.deepEqual(loadConfig(cloud).tasks, {
    kind: 'cloud',
    queue: QUEUE,
    serviceUrl: 'https://kontain-abc-uc.a.run.app',
    serviceAccount: 'tasks@my-project.iam.gserviceaccount.com',
    audience: 'https://kontain-abc-uc.a.run.app',
    secret: undefined,
    endpoint: undefined,
  });
  const custom = loadConfig({ ...cloud, KONTAIN_TASKS_AUDIENCE: 'kontain', KONTAIN_TASKS_SECRET: 'x'.repeat(16), KONTAIN_CLOUD_TASKS_ENDPOINT: 'http://127.0.0.1:8123' }).tasks;
  assert.equal(custom.kind === 'cloud' && custom.audience, 'kontain');
  assert.equal(custom.kind === 'cloud' && custom.endpoint, 'http://127.0.0.1:8123');
  // A secret alone is enough.
  const secretOnly = { KONTAIN_TASKS: QUEUE, KONTAIN_TASKS_SERVICE_URL: 'https://k.example', KONTAIN_TASKS_SECRET: 's'.repeat(20) };
  assert.equal(loadConfig(secretOnly).tasks.kind, 'cloud');
});

test('bad task settings are refused with the variable named', () => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ KONTAIN_TASKS: 'my-queue' }, /KONTAIN_TASKS=my-queue is not projects\//],
    [{ KONTAIN_TASKS: 'projects/p/locations/l/queues/' }, /KONTAIN_TASKS/],
    [{ KONTAIN_TASKS: QUEUE }, /KONTAIN_TASKS_SERVICE_URL must be set/],
    [{ ...cloud, KONTAIN_TASKS_SERVICE_URL: 'ftp://x' }, /KONTAIN_TASKS_SERVICE_URL=ftp:\/\/x must be an http\(s\) URL/],
    [{ ...cloud, KONTAIN_TASKS_SERVICE_URL: 'not a url' }, /is not a URL/],
    [{ ...cloud, KONTAIN_TASKS_SERVICE_ACCOUNT: 'tasks' }, /not a service account email/],
    [{ ...cloud, KONTAIN_TASKS_SERVICE_ACCOUNT: '' }, /needs KONTAIN_TASKS_SERVICE_ACCOUNT .* or KONTAIN_TASKS_SECRET/],
    [{ ...cloud, KONTAIN_TASKS_SECRET: 'short' }, /at least 16 characters/],
    [{ ...cloud, KONTAIN_CLOUD_TASKS_ENDPOINT: 'localhost:8123' }, /KONTAIN_CLOUD_TASKS_ENDPOINT/],
  ];
  for (const [env, message] of bad) {
    assert.throws(() => loadConfig(env), (err: unknown) => err instanceof ConfigError && message.test(err.message), JSON.stringify(env));
  }
});
