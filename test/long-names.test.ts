import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout } from './support/upstream-images.js';
import { skopeoCopy } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import { request } from './support/http.js';
import { until } from './support/kontain-process.js';

const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
let upstream: UpstreamRegistry;
let server: TestServer;
let work: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-long-names-'));
  upstream = await startUpstreamRegistry();
  server = await startKontain({ KONTAIN_INSECURE_REGISTRIES: upstream.host });
});
after(async () => {
  await server.stop();
  await upstream.stop();
  await rm(work, { recursive: true, force: true });
});

test('mirror by tag of a 208-character repository with a 128-character tag', { timeout: 180_000 }, async () => {
  const repository = `long/${'r'.repeat(100)}/${'e'.repeat(102)}`;
  const tag = `t${'a'.repeat(127)}`;
  assert.equal(repository.length, 208);
  assert.equal(tag.length, 128);
  const image = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'long/name': 'a long name\n' })] }]);
  await pushOciLayout(image, `${upstream.host}/${repository}:${tag}`);

  const ref = `${server.address}/mirror/${upstream.host.replace(':', '-')}/${repository}:${tag}`;
  const dir = path.join(work, 'mirror');
  await skopeoCopy(`docker://${ref}`, `oci:${dir}:t`);
  assert.equal(await new OciLayout(dir).manifestDigest('t'), image.top.digest);
  // Again, now from the cached pointer.
  const again = await request(`http://${server.address}/v2/mirror/${upstream.host.replace(':', '-')}/${repository}/manifests/${tag}`, { headers: ACCEPT });
  assert.equal(again.status, 200, again.body.toString());
  assert.equal(again.headers['docker-content-digest'], image.top.digest);
});

test('a 240-character wait name waits and then serves its image', { timeout: 60_000 }, async () => {
  const name = `w/${'a'.repeat(118)}/${'b'.repeat(119)}`;
  assert.equal(name.length, 240);
  const url = `http://${server.address}/v2/wait/${name}/manifests/1s`;
  const first = await request(url, { headers: ACCEPT });
  assert.equal(first.status, 404, first.body.toString());
  assert.ok(first.headers['retry-after'], 'a "not ready" answer with Retry-After');
  let last = first;
  await until('the wait image', async () => (last = await request(url, { headers: ACCEPT })).status === 200);
  assert.equal((JSON.parse(last.body.toString()) as { layers: unknown[] }).layers.length, 10);
});
