import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { startFakeGcs, type FakeGcs } from './support/fake-gcs.js';
import { startKontain, type TestServer } from './support/kontain.js';
import { request } from './support/http.js';
import { skopeoCopy, umociUnpack } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';

let gcs: FakeGcs;
let server: TestServer;
let work: string;

before(async () => {
  gcs = await startFakeGcs();
  server = await startKontain({
    KONTAIN_STORE: 'gs://kontain-test/registry',
    KONTAIN_GCS_ENDPOINT: gcs.endpoint,
    KONTAIN_GCS_URL_MODE: 'public',
  });
  work = await mkdtemp(path.join(tmpdir(), 'kontain-gcs-'));
});
after(async () => {
  await server.stop();
  await gcs.close();
  await rm(work, { recursive: true, force: true });
});

test('skopeo pulls a random image whose blobs are redirected (307) to the GCS endpoint', async () => {
  const dir = path.join(work, 'pulled');
  const before = gcs.requests.length;
  await skopeoCopy(`docker://${server.address}/random/gcs:3x2000`, `oci:${dir}:t`);
  const layout = new OciLayout(dir);
  const manifest = await layout.manifest('t');
  assert.equal(manifest.layers.length, 3);
  // skopeo fetched every layer and the config from the bucket, not from kontain.
  const fetched = gcs.requests.slice(before).filter((r) => r.method === 'GET' && r.path.startsWith('/kontain-test/registry/blobs/sha256/'));
  const wanted = [manifest.config.digest, ...manifest.layers.map((l) => l.digest)].map((d) => d.slice('sha256:'.length));
  for (const hex of wanted) assert.ok(fetched.some((r) => r.path.endsWith(hex)), `blob ${hex} fetched from GCS`);
  for (const layer of manifest.layers) {
    const blob = await layout.blob(layer.digest);
    assert.equal('sha256:' + createHash('sha256').update(blob).digest('hex'), layer.digest);
  }
  await umociUnpack(`${dir}:t`, path.join(work, 'bundle'));
});

test('blob GET redirects with 307; blob HEAD is answered by the app with the digest', async () => {
  const created = await request(`${server.url}/v2/random/gcs/manifests/1x100`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(created.status, 200);
  const digest = (JSON.parse(created.body.toString()) as { layers: Array<{ digest: string; size: number }> }).layers[0]!;
  const get = await request(`${server.url}/v2/random/gcs/blobs/${digest.digest}`);
  assert.equal(get.status, 307);
  assert.equal(get.headers.location, `${gcs.endpoint}/kontain-test/registry/blobs/sha256/${digest.digest.slice(7)}`);
  const head = await request(`${server.url}/v2/random/gcs/blobs/${digest.digest}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['docker-content-digest'], digest.digest);
  assert.equal(Number(head.headers['content-length']), digest.size);
  // The manifest is served by the app itself, read through from the bucket after a restart of the cache.
  const byDigest = await request(`${server.url}/v2/random/gcs/manifests/${created.headers['docker-content-digest']}`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(byDigest.status, 200);
  assert.deepEqual(byDigest.body, created.body);
});

test('an absent blob is not redirected', async () => {
  const res = await request(`${server.url}/v2/random/gcs/blobs/sha256:${'3'.repeat(64)}`);
  assert.equal(res.status, 404);
  assert.match(res.body.toString(), /BLOB_UNKNOWN/);
});
