import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { withTempDir } from './support/temp-dir.js';
import { freePort, startKontainProcess, until } from './support/kontain-process.js';
import { request } from './support/http.js';

/** Starts `kontain serve` expecting it to refuse: exit code and stderr, within a generous bound. */
async function refusedStart(env: Record<string, string>): Promise<{ code: number | string; stderr: string; stdout: string }> {
  const kontain = startKontainProcess({ env: { PORT: String(await freePort()), ...env } });
  try {
    const code = await kontain.exited(60_000);
    return { code, stderr: kontain.stderr(), stdout: kontain.stdout() };
  } finally {
    kontain.kill();
  }
}

/** One line naming what is wrong: no stack trace, no usage text. */
function assertOneLine(stderr: string): void {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0]!, /^kontain: /);
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(stderr, /usage|commands:/i, 'no usage text');
}

test('a store that cannot be written stops the start with a line naming KONTAIN_STORE', { timeout: 150_000 }, async () => {
  // /proc/nope: Node's recursive mkdir never returns for it (it spun at 100% CPU before).
  const proc = await refusedStart({ KONTAIN_STORE: '/proc/nope' });
  assert.equal(proc.code, 2, proc.stderr);
  assertOneLine(proc.stderr);
  assert.match(proc.stderr, /KONTAIN_STORE \(fs:\/proc\/nope\) cannot be used: writing a test object failed: ENOENT/);
  assert.doesNotMatch(proc.stdout, /kontain serving/);

  await withTempDir('kontain-startup-', async (dir) => {
    const file = path.join(dir, 'a-file');
    await writeFile(file, 'not a directory');
    const under = await refusedStart({ KONTAIN_STORE: file });
    assert.equal(under.code, 2, under.stderr);
    assertOneLine(under.stderr);
    assert.match(under.stderr, /KONTAIN_STORE \(fs:.*a-file\) cannot be used: .*ENOTDIR/);
  });
});

test('a malformed KONTAIN_INSECURE_REGISTRIES entry is refused with the expected form', { timeout: 60_000 }, async () => {
  const proc = await refusedStart({ KONTAIN_INSECURE_REGISTRIES: 'registry.local,http://127.0.0.1:5000' });
  assert.equal(proc.code, 2, proc.stderr);
  assertOneLine(proc.stderr);
  assert.match(proc.stderr, /KONTAIN_INSECURE_REGISTRIES entry "http:\/\/127\.0\.0\.1:5000" is not valid.*expected host or host:port/);
});

test('a port in use is one clear line and a non-zero exit', { timeout: 60_000 }, async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '0.0.0.0', resolve));
  const port = (holder.address() as { port: number }).port;
  try {
    await withTempDir('kontain-startup-', async (store) => {
      const proc = await refusedStart({ PORT: String(port), KONTAIN_STORE: store });
      assert.equal(proc.code, 2, proc.stderr);
      assertOneLine(proc.stderr);
      assert.match(proc.stderr, new RegExp(`port ${port} .*already in use.*PORT`));
    });
  } finally {
    await new Promise((resolve) => holder.close(resolve));
  }
});

test('with stdout a closed pipe, SIGTERM still stops the server and the process exits 0', { timeout: 120_000 }, async () => {
  await withTempDir('kontain-startup-', async (store) => {
    const port = await freePort();
    const kontain = startKontainProcess({ env: { PORT: String(port), KONTAIN_STORE: store } });
    try {
      await until('the server to answer', async () => (await request(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200, 60_000);
      // The reader of stdout goes away: every log line from now on meets a broken pipe.
      kontain.child.stdout!.destroy();
      for (let i = 0; i < 20; i++) assert.equal((await request(`http://127.0.0.1:${port}/healthz`)).status, 200);
      kontain.child.kill('SIGTERM');
      assert.equal(await kontain.exited(60_000), 0, kontain.stderr());
    } finally {
      kontain.kill();
    }
  });
});

test('SIGTERM with a download its client stopped reading still ends the process', { timeout: 120_000 }, async () => {
  await withTempDir('kontain-startup-', async (store) => {
    const port = await freePort();
    const kontain = startKontainProcess({ env: { PORT: String(port), KONTAIN_STORE: store } });
    let stalled: http.ClientRequest | undefined;
    try {
      await until('the server to answer', async () => (await request(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200, 60_000);
      const manifest = await request(`http://127.0.0.1:${port}/v2/random/stall/manifests/1x20000000`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(manifest.status, 200);
      const digest = (JSON.parse(manifest.body.toString()) as { layers: Array<{ digest: string }> }).layers[0]!.digest;
      // The client reads one chunk and then nothing: the response can never finish.
      await new Promise<void>((resolve, reject) => {
        stalled = http.get(`http://127.0.0.1:${port}/v2/random/stall/blobs/${digest}`, { agent: false }, (res) => {
          res.once('data', () => {
            res.pause();
            resolve();
          });
        });
        stalled.on('error', reject);
      });
      kontain.child.kill('SIGTERM');
      assert.equal(await kontain.exited(60_000), 0, kontain.stderr());
      assert.match(kontain.stdout(), /closing the connections still open/);
    } finally {
      stalled?.destroy();
      kontain.kill();
    }
  });
});
