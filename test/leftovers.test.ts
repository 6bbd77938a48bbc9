/**
 * Crash leftovers: after `kill -9` mid-write, the partial upload under `<store>/.tmp/` and
 * the flatten spool under `$TMPDIR` are removed by `kontain gc` and at start; files of
 * live processes (sharing the store or the temp directory) are kept.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { openRequest } from './support/http.js';
import { startServerProcess } from './support/server-process.js';
import { craftImage, startContentServer, type ContentServer } from './support/hostile-content.js';
import { tarLayer } from './support/upstream-images.js';
import { ownedPrefix } from '../src/util/leftovers.js';

const MB = 1024 * 1024;
let work: string;
let content: ContentServer;
let layer: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-leftovers-'));
  const image = craftImage([gzipSync(await tarLayer({ 'data/random': randomBytes(8 * MB) }), { level: 1 })]);
  layer = JSON.parse(image.manifest.toString()).layers[0].digest;
  content = await startContentServer({ 'big/image:v1': image });
});
after(async () => {
  await content.stop();
  await rm(work, { recursive: true, force: true });
});

/** A temp-name prefix as process `pid` of this host would write it. */
const prefixOf = (prefix: string, pid: number) => ownedPrefix(prefix).replace(`.${process.pid}.`, `.${pid}.`);

async function until(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 20));
}

test('after kill -9 mid-write, kontain gc removes the partial upload and the spool, and keeps a live process\'s', { timeout: 120_000 }, async () => {
  const spool = await mkdtemp(path.join(work, 'tmp-'));
  const store = path.join(work, 'store-gc');
  const env = { KONTAIN_STORE: store, KONTAIN_INSECURE_REGISTRIES: content.host, KONTAIN_GC_INTERVAL: '0', TMPDIR: spool };
  const server = await startServerProcess(env);
  const hold = content.holdBack(layer, 4 * MB);
  const flatten = openRequest(`http://127.0.0.1:${server.port}/v2/flatten/${content.host.replace(':', '-')}/big/image/manifests/v1`);
  const random = openRequest(`http://127.0.0.1:${server.port}/v2/random/x/manifests/1x99999999`);
  await hold.sent;
  const tmpDir = path.join(store, '.tmp');
  await until(async () => (await readdir(spool)).some((n) => n.startsWith('kontain-flatten-')));
  await until(async () => {
    for (const name of await readdir(tmpDir).catch(() => [])) if ((await stat(path.join(tmpDir, name)).catch(() => undefined))?.size) return true;
    return false;
  });
  await server.stop('SIGKILL');
  hold.release();
  flatten.leave();
  random.leave();
  assert.ok((await readdir(tmpDir)).length > 0 && (await readdir(spool)).length > 0, 'the crash left files behind');

  // Files a live process (this one) is writing, in the same store and temp directory.
  const liveTemp = `${ownedPrefix('')}live`;
  const liveSpool = `${ownedPrefix('kontain-flatten-')}live`;
  await writeFile(path.join(tmpDir, liveTemp), 'being written');
  await mkdir(path.join(spool, liveSpool));

  const cli = fileURLToPath(new URL('../cmd/kontain.js', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'gc'], { env: { ...process.env, ...env, KONTAIN_LOG_LEVEL: 'silent' } });
  const report = JSON.parse(stdout) as { leftoversDeleted: number };
  assert.deepEqual(await readdir(tmpDir), [liveTemp]);
  assert.deepEqual(await readdir(spool), [liveSpool]);
  assert.ok(report.leftoversDeleted >= 2, `report: ${stdout}`);
});

test('at start, the server removes what a dead process left and what is old, and keeps the rest', { timeout: 60_000 }, async () => {
  const spool = await mkdtemp(path.join(work, 'tmp-'));
  const store = path.join(work, 'store-start');
  const tmpDir = path.join(store, '.tmp');
  await mkdir(tmpDir, { recursive: true });
  const exited = spawn('true');
  await once(exited, 'exit');
  const dead = exited.pid!;
  await writeFile(path.join(tmpDir, `${prefixOf('', dead)}upload`), 'partial');
  await mkdir(path.join(spool, `${prefixOf('kontain-flatten-', dead)}abc`));
  await writeFile(path.join(spool, `${prefixOf('kontain-flatten-', dead)}abc`, 'layer-0'), 'spooled');
  // Names from before owners were recorded: by age alone.
  const oldLegacy = path.join(spool, 'kontain-flatten-OLDabc');
  await mkdir(oldLegacy);
  const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
  await utimes(oldLegacy, twoHoursAgo, twoHoursAgo);
  await mkdir(path.join(spool, 'kontain-flatten-NEWabc'));
  await writeFile(path.join(spool, 'unrelated'), 'not ours');

  const server = await startServerProcess({ KONTAIN_STORE: store, KONTAIN_GC_INTERVAL: '0', TMPDIR: spool });
  try {
    assert.deepEqual(await readdir(tmpDir), []);
    assert.deepEqual((await readdir(spool)).sort(), ['kontain-flatten-NEWabc', 'unrelated']);
  } finally {
    await server.stop();
  }
});
