import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFakeGcs, type FakeGcs } from './support/fake-gcs.js';
import { startKontain, type TestServer } from './support/kontain.js';
import { request } from './support/http.js';
import { skopeoCopy } from './support/tools.js';
import { nodeArgsFor, siblingModule } from './support/node-child.js';
import { collectGarbage, type GcReport } from '../src/content/gc.js';
import { ContentStore } from '../src/content/store.js';
import { referencedBy } from '../src/content/links.js';
import { FsBackend } from '../src/storage/fs.js';
import { writeGzipLayer, type WrittenLayer } from '../src/oci/layer.js';
import { writeImage, writeIndex } from '../src/oci/image.js';
import { randomLayerTar } from '../src/generators/random.js';
import type { Descriptor } from '../src/oci/types.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT_ALL = [OCI_MANIFEST, 'application/vnd.oci.image.index.v1+json'].join(', ');
/**
 * Short enough that the test sees old garbage go, long enough for a random image's
 * "tag request, then pull by digest" to finish inside it even on a loaded machine.
 */
const GRACE_MS = 5000;

let gcs: FakeGcs;
let work: string;
before(async () => {
  gcs = await startFakeGcs();
  work = await mkdtemp(path.join(tmpdir(), 'kontain-gc-test-'));
});
after(async () => {
  await gcs.close();
  await rm(work, { recursive: true, force: true });
});

const layer = (store: ContentStore, name: string): Promise<WrittenLayer> => writeGzipLayer(store, randomLayerTar(name, 2000), { gzipLevel: 0 });

async function image(store: ContentStore, layers: WrittenLayer[], architecture = 'amd64'): Promise<Descriptor> {
  return servedUnderRandomGc(store, await writeImage(store, { family: 'oci', config: { architecture, os: 'linux', config: {} }, layers }));
}

/**
 * Links an image (an index with its children) to `random/gc`, as serving it there by tag
 * would: content is served by digest only under repositories whose images reference it.
 */
async function servedUnderRandomGc(store: ContentStore, descriptor: Descriptor): Promise<Descriptor> {
  const manifest = (await store.getManifest(descriptor.digest))!;
  await store.links.addManifest('random', 'gc', manifest);
  for (const child of referencedBy(manifest)) if (await store.getManifest(child.digest)) await servedUnderRandomGc(store, { ...child, mediaType: '' });
  return descriptor;
}

/** An image cached under a pointer, as hosts with deterministic tags (flatten, ko, ...) do. */
const cachedImage = (store: ContentStore, key: string, layers: WrittenLayer[]) => store.cached('gctest', key, () => image(store, layers));

async function manifestStatus(server: TestServer, digest: string): Promise<number> {
  return (await request(`${server.url}/v2/random/gc/manifests/${digest}`, { headers: { Accept: ACCEPT_ALL } })).status;
}
async function blobStatus(server: TestServer, digest: string): Promise<number> {
  return (await request(`${server.url}/v2/random/gc/blobs/${digest}`, { method: 'HEAD' })).status;
}

const backends = {
  fs: (): Record<string, string> => ({}),
  gcs: (prefix: string): Record<string, string> => ({
    KONTAIN_STORE: `gs://kontain-gc/${prefix}`,
    KONTAIN_GCS_ENDPOINT: gcs.endpoint,
    KONTAIN_GCS_URL_MODE: 'public',
  }),
};

for (const [kind, env] of Object.entries(backends)) {
  describe(`gc on the ${kind} store`, () => {
    test('pulls never fail while gc runs in a loop; old unreachable images go, a shared layer stays', { timeout: 180_000 }, async () => {
      // The periodic run is off: the test drives gc itself, as often as it can.
      const server = await startKontain({ ...env(`pull-${Date.now()}`), KONTAIN_GC_INTERVAL: '0' });
      try {
        const { store } = server;
        const shared = await layer(store, 'shared');
        const kept = await cachedImage(store, 'kept', [shared, await layer(store, 'kept')]);
        const index = await store.cached('gctest', 'index', async () =>
          servedUnderRandomGc(store, await writeIndex(store, 'oci', [await image(store, [shared, await layer(store, 'amd64')]), await image(store, [await layer(store, 'arm64')], 'arm64')])),
        );
        // Garbage: no pointer reaches it, and it will be older than the grace period.
        const garbageLayer = await layer(store, 'garbage');
        const garbage = await image(store, [shared, garbageLayer]);
        // From here on the pointer images are protected by reachability alone.
        await sleep(GRACE_MS + 500);

        let pulling = true;
        const reports: GcReport[] = [];
        const gcLoop = (async () => {
          while (pulling) {
            reports.push(await collectGarbage(store, { graceMs: GRACE_MS }));
            await sleep(5);
          }
        })();

        const failures: string[] = [];
        const pulls = 20;
        for (let i = 0; i < pulls; i++) {
          const dest = `oci:${path.join(work, `${kind}-${i}`)}:t`;
          try {
            switch (i % 4) {
              case 0:
                await skopeoCopy(`docker://${server.address}/random/gc@${kept.digest}`, dest);
                break;
              case 1:
                await skopeoCopy(`docker://${server.address}/random/gc@${index.digest}`, dest, ['--all']);
                break;
              case 2: {
                // A random image has no pointer: made by the tag request, then pulled by digest.
                const made = await request(`${server.url}/v2/random/gc/manifests/2x1000`, { headers: { Accept: OCI_MANIFEST } });
                assert.equal(made.status, 200);
                await skopeoCopy(`docker://${server.address}/random/gc@${made.headers['docker-content-digest']}`, dest);
                break;
              }
              case 3:
                for (const digest of [kept.digest, index.digest]) assert.equal(await manifestStatus(server, digest), 200, digest);
                assert.equal(await blobStatus(server, shared.digest), 200);
                break;
            }
          } catch (err) {
            failures.push(`pull ${i}: ${(err as Error).message}`);
          }
        }
        pulling = false;
        await gcLoop;

        assert.deepEqual(failures, []);
        assert.ok(reports.length >= 2, `gc ran ${reports.length} times during the pulls`);
        assert.equal(await manifestStatus(server, garbage.digest), 404);
        assert.equal(await blobStatus(server, garbageLayer.digest), 404);
        assert.equal(await blobStatus(server, shared.digest), 200);
        assert.ok(reports.reduce((n, r) => n + r.manifestsDeleted, 0) >= 1);
        await skopeoCopy(`docker://${server.address}/random/gc@${kept.digest}`, `oci:${path.join(work, `${kind}-after`)}:t`);
      } finally {
        await server.stop();
      }
    });

    test('expired images disappear; a layer they share with a fresh image survives', { timeout: 60_000 }, async () => {
      const server = await startKontain({ ...env(`ttl-${Date.now()}`), KONTAIN_TTL: '1', KONTAIN_GC_INTERVAL: '0' });
      try {
        const { store } = server;
        const shared = await layer(store, 'shared');
        const ownLayer = await layer(store, 'expiring');
        const expiring = await cachedImage(store, 'expiring', [shared, ownLayer]);
        await sleep(1500); // past KONTAIN_TTL
        const fresh = await cachedImage(store, 'fresh', [shared, await layer(store, 'fresh')]);

        // Grace 0: only reachability protects anything made before the run.
        const report = await collectGarbage(store, { graceMs: 0 });

        assert.equal(report.pointersExpired, 1);
        assert.equal(report.pointersLive, 1);
        assert.equal(await store.getPointer('gctest', 'expiring', { allowExpired: true }), undefined);
        assert.equal(await manifestStatus(server, expiring.digest), 404);
        assert.equal(await blobStatus(server, ownLayer.digest), 404);
        assert.equal(await blobStatus(server, shared.digest), 200);
        await skopeoCopy(`docker://${server.address}/random/gc@${fresh.digest}`, `oci:${path.join(work, `${kind}-fresh`)}:t`);
      } finally {
        await server.stop();
      }
    });
  });
}

test('serve collects garbage every KONTAIN_GC_INTERVAL', { timeout: 60_000 }, async () => {
  const server = await startKontain({ KONTAIN_TTL: '1', KONTAIN_GC_INTERVAL: '1', KONTAIN_GC_GRACE: '0' });
  try {
    const expiring = await cachedImage(server.store, 'periodic', [await layer(server.store, 'periodic')]);
    const deadline = Date.now() + 20_000;
    while ((await manifestStatus(server, expiring.digest)) === 200 && Date.now() < deadline) await sleep(250);
    assert.equal(await manifestStatus(server, expiring.digest), 404);
    assert.equal(await server.store.getPointer('gctest', 'periodic', { allowExpired: true }), undefined);
  } finally {
    await server.stop(); // also stops the timer and any run under way
  }
});

test('`kontain gc` prints its report; --dry-run deletes nothing', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-gc-cli-'));
  try {
    const store = new ContentStore(new FsBackend(dir));
    const expired = await image(store, [await layer(store, 'cli')]);
    await store.setPointer('gctest', 'cli', expired);
    await sleep(1100);
    const { args, path: entry } = nodeArgsFor(siblingModule(import.meta.url, '../cmd/kontain'));
    const run = async (...extra: string[]) => {
      const { stdout } = await promisify(execFile)(process.execPath, [...args, entry, 'gc', ...extra], {
        env: { ...process.env, KONTAIN_STORE: dir, KONTAIN_TTL: '1', KONTAIN_GC_GRACE: '0', KONTAIN_LOG_LEVEL: 'warn' },
      });
      return JSON.parse(stdout) as GcReport;
    };
    const dry = await run('--dry-run');
    assert.equal(dry.dryRun, true);
    assert.deepEqual([dry.pointersExpired, dry.manifestsDeleted, dry.blobsDeleted], [1, 1, 2]);
    assert.ok(await store.backend.stat(ContentStore.manifestName(expired.digest)));
    const real = await run();
    assert.deepEqual([real.pointersExpired, real.manifestsDeleted, real.blobsDeleted], [1, 1, 2]);
    const left: string[] = [];
    for await (const { name } of store.list('')) left.push(name);
    assert.deepEqual(left, []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
