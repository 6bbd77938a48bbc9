import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { loadConfig } from '../src/config.js';
import { configuredSecrets, createLogger } from '../src/server/logging.js';
import { startServer } from '../src/server/serve.js';
import { withTempDir } from './support/temp-dir.js';
import { freePort } from './support/kontain-process.js';
import { request } from './support/http.js';

const SECRET = 'task-secret-that-must-stay-secret';

/** A Cloud Tasks API stand-in that refuses every call with a 400 echoing the request, as Google's API can. */
async function echoingTasksApi(): Promise<{ server: Server; endpoint: string; bodies: string[] }> {
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      bodies.push(body);
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 400, status: 'INVALID_ARGUMENT', message: `Invalid task ${body} (request headers: ${JSON.stringify(req.headers)})` } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`, bodies };
}

test('an error from the Cloud Tasks API that echoes the request logs no task secret', { timeout: 60_000 }, async () => {
  const api = await echoingTasksApi();
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString().trim().split('\n'));
      callback();
    },
  });
  try {
    await withTempDir('kontain-redaction-', async (store) => {
      const port = await freePort();
      const config = loadConfig({
        PORT: String(port),
        KONTAIN_STORE: store,
        KONTAIN_TASKS: 'projects/p/locations/l/queues/q',
        KONTAIN_TASKS_SERVICE_URL: `http://127.0.0.1:${port}`,
        KONTAIN_TASKS_SECRET: SECRET,
        KONTAIN_CLOUD_TASKS_ENDPOINT: api.endpoint,
      });
      const running = await startServer(config, createLogger('info', sink, configuredSecrets(config)), '127.0.0.1');
      try {
        const res = await request(`http://127.0.0.1:${port}/v2/wait/x/manifests/10s`, {
          headers: { Accept: 'application/vnd.oci.image.manifest.v1+json', Authorization: 'Bearer client-token-abcdef' },
        });
        assert.equal(res.status, 500, res.body.toString());
      } finally {
        await running.close();
      }
    });
  } finally {
    await new Promise((resolve) => api.server.close(resolve));
  }
  assert.ok(api.bodies.some((body) => body.includes(SECRET)), 'the API was sent the secret (and echoed it)');
  const log = lines.join('\n');
  const failure = lines.find((line) => line.includes('unexpected error'));
  assert.ok(failure, `the failure is logged:\n${log}`);
  assert.match(failure, /Invalid task/, 'with the API\'s message');
  assert.match(failure, /\[REDACTED\]/);
  assert.ok(!log.includes(SECRET), `the secret is not in the log:\n${log}`);
});
