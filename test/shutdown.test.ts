import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { nodeArgsFor, siblingModule } from './support/node-child.js';
import { request } from './support/http.js';

test('SIGTERM lets an in-flight image finish, then the process exits 0', { timeout: 120_000 }, async () => {
  const store = await mkdtemp(path.join(tmpdir(), 'kontain-shutdown-'));
  const { args, path: entry } = nodeArgsFor(siblingModule(import.meta.url, '../cmd/kontain'));
  const child = spawn(process.execPath, [...args, entry, 'serve'], {
    env: { ...process.env, PORT: '0', KONTAIN_STORE: store, KONTAIN_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let output = '';
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const match = /"port":(\d+)/.exec(output);
        if (match) resolve(Number(match[1]));
      });
      child.once('exit', () => reject(new Error(`server exited early: ${output}`)));
    });
    // A large image takes a moment to make: the signal arrives while it is being made.
    const inFlight = request(`http://127.0.0.1:${port}/v2/random/slow/manifests/4x20000000`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    child.kill('SIGTERM');
    const res = await inFlight;
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-content-digest'], 'sha256:' + createHash('sha256').update(res.body).digest('hex'));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
    assert.match(output, /shutting down/);
    assert.match(output, /"stopped"/);
    assert.ok(output.indexOf('shutting down') < output.indexOf('"stopped"'), `"shutting down" is logged before "stopped":\n${output}`);
  } finally {
    child.kill('SIGKILL');
    await rm(store, { recursive: true, force: true });
  }
});
