/**
 * flatten and estargz against hostile upstream content: bad manifests and impossible
 * tars are the upstream's fault (424 naming it, never a bare 500); layers of very many
 * files and gzip bombs are refused within a documented budget, with the server's memory
 * and disk measured on a child process; refusals are remembered per upstream digest.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { MediaType } from '../src/oci/mediatypes.js';
import { startKontain, type TestServer } from './support/kontain.js';
import { request, registryError } from './support/http.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { peakRss, startServerProcess } from './support/server-process.js';
import { peakDiskUsage } from './support/disk-usage.js';
import {
  craftDocument,
  craftImage,
  danglingHardlinkLayer,
  gzipBombLayer,
  manyEmptyFilesLayer,
  pushImage,
  startContentServer,
  symlinkLoopLayer,
  type ContentServer,
} from './support/hostile-content.js';

const MB = 1024 * 1024;
let content: ContentServer;
let manyFilesLayer: string;
let work: string;

const upstreamPath = (host: string) => host.replace(':', '-');

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-hostile-'));
  const many = craftImage([await manyEmptyFilesLayer(400_000)]);
  manyFilesLayer = JSON.parse(many.manifest.toString()).layers[0].digest;
  content = await startContentServer({
    'bad/hardlink:v1': craftImage([gzipSync(await danglingHardlinkLayer())]),
    'bad/loop:v1': craftImage([gzipSync(await symlinkLoopLayer())]),
    'bad/notgzip:v1': craftImage([Buffer.from('this is not gzip at all')]),
    'bad/index:v1': craftDocument({ schemaVersion: 2, mediaType: MediaType.ociIndex }, MediaType.ociIndex),
    'bad/nolayers:v1': craftImage([], (m) => delete m.layers),
    'bad/nullconfig:v1': craftImage([], (m) => (m.config = null)),
    'bad/layersobject:v1': craftImage([], (m) => (m.layers = { 0: m.config })),
    'many/files:v1': many,
  });
});
after(async () => {
  await content.stop();
  await rm(work, { recursive: true, force: true });
});

describe('bad upstream content is a 424 naming the upstream and the reason', () => {
  let server: TestServer;
  before(async () => (server = await startKontain({ KONTAIN_INSECURE_REGISTRIES: content.host })));
  after(() => server.stop());

  const cases: Array<[string, string[], RegExp]> = [
    ['bad/hardlink', ['flatten'], /hardlink target "missing\/target" does not exist/],
    ['bad/loop', ['flatten'], /too many levels of symbolic links/],
    ['bad/notgzip', ['flatten', 'estargz'], /bad content/],
    ['bad/index', ['flatten', 'estargz'], /index sha256:[0-9a-f]{64} has no manifests array/],
    ['bad/nolayers', ['flatten', 'estargz'], /has no layers array/],
    ['bad/nullconfig', ['flatten', 'estargz'], /has config that is not a descriptor object/],
    ['bad/layersobject', ['flatten', 'estargz'], /has no layers array/],
  ];
  for (const [image, hosts, reason] of cases) {
    for (const host of hosts) {
      test(`${host} of ${image}`, async () => {
        const res = await request(`${server.url}/v2/${host}/${upstreamPath(content.host)}/${image}/manifests/v1`);
        assert.equal(res.status, 424, res.body.toString());
        const error = registryError(res);
        assert.equal(error.code, 'UNAVAILABLE');
        assert.match(error.message, new RegExp(`${content.host}/${image}@sha256:`));
        assert.match(error.message, reason);
      });
    }
  }
});

test('a layer of 400,000 empty files: refused at the entry limit with bounded memory, /healthz answers meanwhile, the refusal is remembered', { timeout: 240_000 }, async () => {
  const server = await startServerProcess({
    KONTAIN_STORE: path.join(work, 'store-many'),
    KONTAIN_INSECURE_REGISTRIES: content.host,
    KONTAIN_GC_INTERVAL: '0',
    KONTAIN_DERIVED_MAX_ENTRIES: '50000',
  });
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const url = `${base}/v2/flatten/${upstreamPath(content.host)}/many/files/manifests/v1`;
    // The upstream sends the first ~20,000 entries, then holds the rest back.
    const layerSize = (await fetch(`http://${content.host}/v2/many/files/blobs/${manyFilesLayer}`, { method: 'HEAD' })).headers.get('content-length');
    const hold = content.holdBack(manyFilesLayer, Math.floor(Number(layerSize) / 20));
    let flattenDone = false;
    const flatten = request(url).finally(() => (flattenDone = true));
    await hold.sent;
    const health = await request(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(flattenDone, false, '/healthz answered while the flatten was still running');
    hold.release();
    const res = await flatten;
    assert.equal(res.status, 422, res.body.toString());
    assert.match(registryError(res).message, /more than 50,000 tar entries \(the limit is KONTAIN_DERIVED_MAX_ENTRIES\)/);

    const estargz = await request(`${base}/v2/estargz/${upstreamPath(content.host)}/many/files/manifests/v1`);
    assert.equal(estargz.status, 422, estargz.body.toString());
    assert.match(registryError(estargz).message, /KONTAIN_DERIVED_MAX_ENTRIES/);
    const rss = await peakRss(server.child.pid!);
    assert.ok(rss < 400 * MB, `peak RSS ${Math.round(rss / MB)} MB`);

    // Remembered: the same answer again without reading the layer again.
    const gets = content.blobGets(manyFilesLayer);
    const again = await request(url);
    assert.equal(again.status, 422);
    assert.equal(content.blobGets(manyFilesLayer), gets, 'the retry did not fetch the layer again');
  } finally {
    await server.stop();
  }
});

describe('a gzip bomb', () => {
  let upstream: UpstreamRegistry;
  before(async () => {
    upstream = await startUpstreamRegistry();
    // 1 GiB of zeros in about 1 MB of gzip.
    await pushImage(upstream.url, 'bomb/zeros', 'v1', craftImage([gzipBombLayer(1024 * MB)]));
  });
  after(() => upstream.stop());

  test('is refused at KONTAIN_DERIVED_MAX_BYTES without spooling more than that to disk', { timeout: 180_000 }, async () => {
    const spool = await mkdtemp(path.join(work, 'tmp-'));
    const store = path.join(work, 'store-bomb');
    const server = await startServerProcess({
      KONTAIN_STORE: store,
      KONTAIN_INSECURE_REGISTRIES: upstream.host,
      KONTAIN_GC_INTERVAL: '0',
      KONTAIN_DERIVED_MAX_BYTES: String(64 * MB),
      TMPDIR: spool,
    });
    try {
      for (const host of ['flatten', 'estargz']) {
        const pull = request(`http://127.0.0.1:${server.port}/v2/${host}/${upstreamPath(upstream.host)}/bomb/zeros/manifests/v1`);
        const peak = await peakDiskUsage([spool, store], pull);
        const res = await pull;
        assert.equal(res.status, 422, res.body.toString());
        assert.match(registryError(res).message, /expand to more than 67,108,864 bytes uncompressed \(the limit is KONTAIN_DERIVED_MAX_BYTES\)/);
        assert.ok(peak < 256 * MB, `${host}: ${Math.round(peak / MB)} MB on disk at the peak`);
      }
    } finally {
      await server.stop();
    }
  });
});
