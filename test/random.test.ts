import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { startKontain, type TestServer } from './support/kontain.js';
import { skopeoCopy, skopeoInspect, umociUnpack } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import type { ImageConfig } from '../src/oci/types.js';

let server: TestServer;
let work: string;

before(async () => {
  server = await startKontain();
  work = await mkdtemp(path.join(tmpdir(), 'kontain-random-test-'));
});
after(async () => {
  await server.stop();
  await rm(work, { recursive: true, force: true });
});

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');

/** The regular files of a tar: name → bytes. */
async function tarFiles(tarBytes: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        if (header.type === 'file') files.set(header.name, Buffer.concat(chunks));
        next();
      });
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  Readable.from([tarBytes]).pipe(extract);
  await done;
  return files;
}

test('skopeo copies random/t:3x1000: three gzip layers, 3,000 random bytes, correct diff_ids, umoci unpacks it', async () => {
  const dir = path.join(work, 'three');
  await skopeoCopy(`docker://${server.address}/random/t:3x1000`, `oci:${dir}:t`);
  const layout = new OciLayout(dir);
  const manifest = await layout.manifest('t');
  assert.equal(manifest.layers.length, 3);
  const config = JSON.parse((await layout.blob(manifest.config.digest)).toString()) as ImageConfig;
  assert.equal(config.rootfs.diff_ids.length, 3);
  assert.equal(config.history?.length, 3, 'one history entry per layer');

  let payload = 0;
  const contents = new Set<string>();
  for (const [i, layer] of manifest.layers.entries()) {
    assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    const blob = await layout.blob(layer.digest);
    assert.equal(sha256(blob), layer.digest);
    assert.equal(blob.length, layer.size);
    const tarBytes = gunzipSync(blob);
    assert.equal(sha256(tarBytes), config.rootfs.diff_ids[i], `diff_id of layer ${i}`);
    for (const data of (await tarFiles(tarBytes)).values()) {
      payload += data.length;
      contents.add(data.toString('hex'));
    }
  }
  assert.equal(payload, 3000);
  assert.equal(contents.size, 3, 'each layer has its own random bytes');

  const bundle = path.join(work, 'three-bundle');
  await umociUnpack(`${dir}:t`, bundle);
  const files = (await readdir(path.join(bundle, 'rootfs'))).sort();
  assert.equal(files.length, 3);
  for (const file of files) assert.equal((await stat(path.join(bundle, 'rootfs', file))).size, 1000);
});

test('the digest skopeo inspect reports pulls again by digest with identical bytes', async () => {
  const info = await skopeoInspect(`docker://${server.address}/random/again:2x500`);
  const digest = info.Digest as string;
  assert.match(digest, /^sha256:[a-f0-9]{64}$/);
  const first = path.join(work, 'by-digest-1');
  const second = path.join(work, 'by-digest-2');
  await skopeoCopy(`docker://${server.address}/random/again@${digest}`, `oci:${first}:x`);
  await skopeoCopy(`docker://${server.address}/random/again@${digest}`, `oci:${second}:x`);
  const a = new OciLayout(first);
  const b = new OciLayout(second);
  assert.equal(await a.manifestDigest('x'), digest);
  assert.equal(await b.manifestDigest('x'), digest);
  const manifest = await a.manifest('x');
  for (const layer of manifest.layers) {
    assert.deepEqual(await a.blob(layer.digest), await b.blob(layer.digest));
  }
  assert.deepEqual(await readFile(a.blobPath(digest)), await readFile(b.blobPath(digest)));
});

test('every tag request makes a new image', async () => {
  const one = await skopeoInspect(`docker://${server.address}/random/fresh:1x100`);
  const two = await skopeoInspect(`docker://${server.address}/random/fresh:1x100`);
  assert.notEqual(one.Digest, two.Digest);
  assert.notDeepEqual(one.Layers, two.Layers);
});

test('a client that asks for Docker media types gets an all-Docker image', async () => {
  const res = await fetch(`${server.url}/v2/random/docker/manifests/2x10`, {
    headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');
  const manifest = (await res.json()) as { mediaType: string; config: { mediaType: string }; layers: Array<{ mediaType: string }> };
  assert.equal(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  assert.equal(manifest.config.mediaType, 'application/vnd.docker.container.image.v1+json');
  assert.deepEqual(
    manifest.layers.map((l) => l.mediaType),
    ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.docker.image.rootfs.diff.tar.gzip'],
  );
});
