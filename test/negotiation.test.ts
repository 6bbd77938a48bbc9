import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { loadConfig } from '../src/config.js';
import { ContentStore } from '../src/content/store.js';
import { FsBackend } from '../src/storage/fs.js';
import { createApp } from '../src/server/app.js';
import { createLogger } from '../src/server/logging.js';
import { writeGzipLayer } from '../src/oci/layer.js';
import { writeImage, writeIndex } from '../src/oci/image.js';
import type { Host } from '../src/generators/generator.js';
import type { Descriptor } from '../src/oci/types.js';
import { request } from './support/http.js';

/** A host whose tag `multi` is a two-platform index (arm64 listed first). */
let server: Server;
let dir: string;
let base: string;
let index: Descriptor;
let amd64: Descriptor;
let docker: Descriptor;

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kontain-negotiation-'));
  const store = new ContentStore(new FsBackend(dir));
  const images: Descriptor[] = [];
  for (const architecture of ['arm64', 'amd64']) {
    const layer = await writeGzipLayer(store, Readable.from([Buffer.alloc(1024)]));
    images.push(await writeImage(store, { family: 'oci', config: { architecture, os: 'linux' }, layers: [layer] }));
  }
  amd64 = images[1]!;
  index = await writeIndex(store, 'oci', images);
  docker = await writeImage(store, { family: 'docker', config: { architecture: 'amd64', os: 'linux' }, layers: [] });
  // Served by digest only under a repository whose images reference it, as a pull by tag
  // there would have recorded.
  await store.links.addManifest('multi', 'x', (await store.getManifest(docker.digest))!);
  const generator: Host = {
    service: 'multi',
    summary: 'test host',
    examples: [],
    manifest: async () => index,
  };
  const config = loadConfig({ KONTAIN_STORE: dir });
  const app = createApp({ config, store, generators: new Map([['multi', generator]]), log: createLogger('silent') });
  server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
});
after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

test('a client that accepts an index gets the index', async () => {
  const res = await request(`${base}/v2/multi/x/manifests/multi`, { headers: { Accept: [OCI_MANIFEST, OCI_INDEX] } });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], OCI_INDEX);
  assert.equal(res.headers['docker-content-digest'], index.digest);
});

test('a client that accepts only single manifests gets the linux/amd64 image, with its own digest', async () => {
  const res = await request(`${base}/v2/multi/x/manifests/multi`, { headers: { Accept: OCI_MANIFEST } });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], OCI_MANIFEST);
  assert.equal(res.headers['docker-content-digest'], amd64.digest);
});

test('Accept with parameters and several lines is understood', async () => {
  const res = await request(`${base}/v2/multi/x/manifests/multi`, {
    headers: { Accept: [`${OCI_MANIFEST}; q=0.5`, `application/json, ${OCI_INDEX};q=0.9`] },
  });
  assert.equal(res.headers['content-type'], OCI_INDEX);
});

test('a client that accepts neither format is told so, not sent something else', async () => {
  const res = await request(`${base}/v2/multi/x/manifests/multi`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
  assert.equal(res.status, 404);
  assert.match(res.body.toString(), /MANIFEST_UNKNOWN.*Accept header/);
});

test('by digest, the stored manifest is served whatever Accept says (only tags are negotiated)', async () => {
  const res = await request(`${base}/v2/multi/x/manifests/${index.digest}`, { headers: { Accept: OCI_MANIFEST } });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], OCI_INDEX);
  assert.equal(res.headers['docker-content-digest'], index.digest);
});

test('an OCI-only client pulls a Docker-typed image by digest', async () => {
  const res = await request(`${base}/v2/multi/x/manifests/${docker.digest}`, { headers: { Accept: [OCI_MANIFEST, OCI_INDEX] } });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], DOCKER_MANIFEST);
  assert.equal(res.headers['docker-content-digest'], docker.digest);
  const head = await request(`${base}/v2/multi/x/manifests/${docker.digest}`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-type'], DOCKER_MANIFEST);
});
