import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from './support/upstream-images.js';
import { trickyLayers } from './support/rich-layers.js';
import { skopeoCopy, umociUnpack } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import { readTree, type TreeNode } from './support/tree.js';
import { estargzVerifier } from './support/estargz-verify.js';
import type { ImageConfig, ImageIndex } from '../src/oci/types.js';

let upstream: UpstreamRegistry;
let server: TestServer;
let work: string;
let single: WrittenLayout;
let multi: WrittenLayout;
let upstreamPath: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-derived-'));
  upstream = await startUpstreamRegistry();
  upstreamPath = upstream.host.replace(':', '-');
  single = await writeOciLayout(await layoutDir(), 'v1', [{ layers: await trickyLayers() }]);
  await pushOciLayout(single, `${upstream.host}/lib/tricky:v1`);
  await pushOciLayout(await writeOciLayout(await layoutDir(), 'v1', [{ layers: await trickyLayers({ sameLayerLinks: true }) }]), `${upstream.host}/lib/lazy:v1`);
  multi = await writeOciLayout(await layoutDir(), 'v1', [
    { layers: [await tarLayer({ 'bin/sh': 'amd64 shell' }), await tarLayer({ 'etc/os': 'amd64' })], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [await tarLayer({ 'bin/sh': 'arm64 shell' }), await tarLayer({ 'etc/os': 'arm64' })], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]);
  await pushOciLayout(multi, `${upstream.host}/lib/multi:v1`);
  server = await startKontain({ KONTAIN_INSECURE_REGISTRIES: upstream.host });
});
after(async () => {
  await server.stop();
  await upstream.stop();
  await rm(work, { recursive: true, force: true });
});

/** Pulls `source` into a fresh layout and unpacks it with umoci; returns the tree and the layout. */
async function pullAndUnpack(source: string, name: string, extra: string[] = []): Promise<{ tree: TreeNode[]; layout: OciLayout }> {
  const dir = path.join(work, name);
  await skopeoCopy(source, `oci:${dir}:t`, extra);
  const bundle = path.join(work, `${name}-bundle`);
  await umociUnpack(`${dir}:t`, bundle);
  return { tree: await readTree(path.join(bundle, 'rootfs')), layout: new OciLayout(dir) };
}

describe('flatten', () => {
  test('one layer holding exactly the tree of the original layers', async () => {
    const original = await pullAndUnpack(`docker://${upstream.host}/lib/tricky:v1`, 'orig');
    const flat = await pullAndUnpack(`docker://${server.address}/flatten/${upstreamPath}/lib/tricky:v1`, 'flat');
    const manifest = await flat.layout.manifest('t');
    assert.equal(manifest.layers.length, 1);
    assert.deepEqual(flat.tree, original.tree);
    const paths = flat.tree.map((n) => n.path);
    assert.ok(!paths.includes('etc/deleted') && !paths.includes('opaque/lower') && paths.includes('opaque/upper'));
    const link = flat.tree.find((n) => n.path === 'usr/bin/tool-link')!;
    assert.equal(link.linkGroup, flat.tree.find((n) => n.path === 'usr/bin/tool')!.linkGroup, 'the hardlink survives as a hardlink');
    const config = JSON.parse((await flat.layout.blob(manifest.config.digest)).toString()) as ImageConfig;
    assert.deepEqual(config.config?.Cmd, ['/bin/sh']);
    assert.equal(config.history?.length, 1);
    assert.equal(config.rootfs.diff_ids.length, 1);
  });

  test('an index is flattened per platform into an index with the same platforms', async () => {
    const dir = path.join(work, 'flat-multi');
    await skopeoCopy(`docker://${server.address}/flatten/${upstreamPath}/lib/multi:v1`, `oci:${dir}:t`, ['--all']);
    const layout = new OciLayout(dir);
    const index = JSON.parse((await layout.blob(await layout.manifestDigest('t'))).toString()) as ImageIndex;
    assert.deepEqual(index.manifests.map((m) => m.platform), multi.images.map((i) => i.manifest.platform));
    for (const child of index.manifests) {
      const manifest = JSON.parse((await layout.blob(child.digest)).toString()) as { layers: Array<{ digest: string }> };
      assert.equal(manifest.layers.length, 1);
    }
  });

  test('a repeat request does no work: same digest, no upstream blob fetch', async () => {
    const url = `${server.url}/v2/flatten/${upstreamPath}/lib/tricky/manifests/v1`;
    const first = await fetch(url, { method: 'HEAD' });
    const blobGets = async () => (await upstream.requests()).filter((r) => r.method === 'GET' && r.uri.includes('/blobs/')).length;
    const before = await blobGets();
    const second = await fetch(url, { method: 'HEAD' });
    assert.equal(second.headers.get('docker-content-digest'), first.headers.get('docker-content-digest'));
    assert.equal(await blobGets(), before);
  });
});

describe('estargz', () => {
  test('every layer is valid eStargz (checked by the reference library) and unpacks to the original tree', async (t) => {
    const verifier = await estargzVerifier();
    if (typeof verifier === 'string') {
      t.skip(verifier);
      return;
    }
    const original = await pullAndUnpack(`docker://${upstream.host}/lib/lazy:v1`, 'orig-e');
    const converted = await pullAndUnpack(`docker://${server.address}/estargz/${upstreamPath}/lib/lazy:v1`, 'estargz');
    const manifest = await converted.layout.manifest('t');
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(manifest.layers.length, 3);
    const config = JSON.parse((await converted.layout.blob(manifest.config.digest)).toString()) as ImageConfig;
    for (const [i, layer] of manifest.layers.entries()) {
      const toc = layer.annotations?.['containerd.io/snapshot/stargz/toc.digest'];
      assert.match(toc ?? '', /^sha256:[a-f0-9]{64}$/);
      const blob = await converted.layout.blob(layer.digest);
      const tarBytes = gunzipSync(blob);
      assert.equal(layer.annotations?.['io.containers.estargz.uncompressed-size'], String(tarBytes.length));
      assert.equal(config.rootfs.diff_ids[i], 'sha256:' + (await import('node:crypto')).createHash('sha256').update(tarBytes).digest('hex'));
      await verifier.verify(converted.layout.blobPath(layer.digest), toc!);
    }
    const ignore = new Set(['stargz.index.json', '.no.prefetch.landmark', '.prefetch.landmark']);
    assert.deepEqual(converted.tree.filter((n) => !ignore.has(n.path)), original.tree);
  });
});
