/**
 * Several kontain instances sharing one store, as Cloud Run runs them: three server
 * processes on one bucket of the local GCS endpoint. Work that makes an image is done
 * once across all of them (a lease in the store), and an instance that dies holding a
 * lease is replaced by another.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFakeGcs, type FakeGcs } from './support/fake-gcs.js';
import { startServerProcess, type ServerProcess } from './support/server-process.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout } from './support/upstream-images.js';
import { proxyURL, writeGoModule } from './support/go-module-proxy.js';
import { exec } from './support/tools.js';

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');
const GO_CACHE = path.join(tmpdir(), 'kontain-test-go-cache');
const MODULE = 'example.com/leased';
const MAIN = 'package main\n\nfunc main() { println("leased") }\n';

let gcs: FakeGcs;
let upstream: UpstreamRegistry;
let work: string;
let goLog: string;
let env: Record<string, string>;
const instances: ServerProcess[] = [];

/** Starts one more instance on the shared bucket. */
async function startInstance(extra: Record<string, string> = {}): Promise<ServerProcess> {
  const instance = await startServerProcess({ ...env, ...extra });
  instances.push(instance);
  return instance;
}

interface Pulled {
  status: number;
  digest?: string;
  body: string;
}

/**
 * A pull as a client does it: the manifest (an index's first image), then its config and
 * every layer, each checked against its digest. Resolves with the top manifest's digest.
 */
async function pull(instance: ServerProcess, repository: string, tag: string): Promise<Pulled> {
  const base = `http://127.0.0.1:${instance.port}/v2/${repository}`;
  // A build that outlasts the hold answers 404 with Retry-After; clients pull again, as here.
  let top: Response;
  let body: string;
  for (let attempt = 0; ; attempt++) {
    top = await fetch(`${base}/manifests/${tag}`, { headers: { accept: ACCEPT }, signal: AbortSignal.timeout(240_000) });
    body = await top.text();
    const retryAfter = top.headers.get('retry-after');
    if (top.status !== 404 || !retryAfter || attempt >= 30) break;
    await sleep(Number(retryAfter) * 1000);
  }
  if (top.status !== 200) return { status: top.status, body };
  let manifest = JSON.parse(body);
  if (manifest.manifests) {
    const child = await fetch(`${base}/manifests/${manifest.manifests[0].digest}`, { headers: { accept: ACCEPT } });
    manifest = JSON.parse(await child.text());
  }
  for (const blob of [manifest.config, ...manifest.layers]) {
    const answer = await fetch(`${base}/blobs/${blob.digest}`);
    assert.equal(answer.status, 200, `blob ${blob.digest} of ${repository} from ${answer.url}: ${answer.status === 200 ? "" : await answer.text()}`);
    assert.equal(sha256(Buffer.from(await answer.arrayBuffer())), blob.digest);
  }
  return { status: 200, digest: top.headers.get('docker-content-digest') ?? undefined, body };
}

/** `go build` invocations so far, from the wrapper that kontain runs as its go command. */
async function goBuilds(): Promise<number> {
  const lines = (await readFile(goLog, 'utf8').catch(() => '')).split('\n');
  return lines.filter((line) => line.split(' ').includes('build')).length;
}

before(
  async () => {
    await exec('go', ['version'], 30_000);
    work = await mkdtemp(path.join(tmpdir(), 'kontain-instances-'));
    gcs = await startFakeGcs();
    upstream = await startUpstreamRegistry();

    // The flatten source: three layers, so one build reads three upstream blobs.
    const layers = [];
    for (let i = 0; i < 3; i++) layers.push(await tarLayer({ [`layer-${i}.txt`]: `layer ${i}\n`.repeat(1000) }));
    await pushOciLayout(await writeOciLayout(await layoutDir(), 'v1', [{ layers }]), `${upstream.host}/shared/app:v1`);
    // ko's base image.
    await pushOciLayout(await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'etc/base': 'base\n' })] }]), `${upstream.host}/shared/base:v1`);

    const proxyDir = path.join(work, 'goproxy');
    for (const version of ['v0.1.0', 'v0.2.0']) {
      await writeGoModule(proxyDir, MODULE, version, { 'go.mod': `module ${MODULE}\n\ngo 1.19\n`, 'main.go': MAIN });
    }
    // kontain's go: logs each call, and holds builds a few seconds so that they overlap
    // the other instances' requests (and can be killed part-way).
    goLog = path.join(work, 'go.log');
    const wrapper = path.join(work, 'go-wrapper.sh');
    await writeFile(wrapper, `#!/bin/sh\necho "$$ $*" >> '${goLog}'\n[ "$1" = build ] && sleep 3\nexec go "$@"\n`);
    await chmod(wrapper, 0o755);

    env = {
      KONTAIN_STORE: 'gs://kontain-instances/shared',
      KONTAIN_GCS_ENDPOINT: gcs.endpoint,
      KONTAIN_GCS_URL_MODE: 'public',
      KONTAIN_INSECURE_REGISTRIES: upstream.host,
      KONTAIN_GOPROXY: proxyURL(proxyDir),
      KONTAIN_KO_BASE: `${upstream.host}/shared/base:v1`,
      KONTAIN_KO_CACHE: GO_CACHE,
      KONTAIN_GO: wrapper,
      // Short, so the takeover test is quick; long enough that a loaded machine's timer delays
      // do not make a live holder look dead.
      KONTAIN_LEASE_TTL: '6',
    };
    for (let i = 0; i < 3; i++) await startInstance();
  },
  { timeout: 180_000 },
);

after(async () => {
  for (const instance of instances) instance.child.kill('SIGKILL');
  await upstream?.stop();
  await gcs?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

test('20 concurrent cold pulls over three instances: one flatten build, one upstream GET per blob, one ko build, one image', { timeout: 300_000 }, async () => {
  const flattenRepo = `flatten/${upstream.host.replace(':', '-')}/shared/app`;
  const pulls: Array<Promise<Pulled>> = [];
  for (let i = 0; i < 20; i++) {
    const instance = instances[i % 3]!;
    pulls.push(pull(instance, flattenRepo, 'v1'));
    pulls.push(pull(instance, `ko/${MODULE}`, 'v0.1.0'));
  }
  const results = await Promise.all(pulls);
  for (const result of results) assert.equal(result.status, 200, result.body);
  const flattenDigests = new Set(results.filter((_, i) => i % 2 === 0).map((r) => r.digest));
  const koDigests = new Set(results.filter((_, i) => i % 2 === 1).map((r) => r.digest));
  assert.equal(flattenDigests.size, 1, `flatten pulls got ${[...flattenDigests].join(', ')}`);
  assert.equal(koDigests.size, 1, `ko pulls got ${[...koDigests].join(', ')}`);

  // The upstream saw each of the source image's blobs fetched once, by one instance.
  const blobGets = new Map<string, number>();
  for (const r of await upstream.requests()) {
    const match = /^\/v2\/shared\/app\/blobs\/(sha256:[0-9a-f]{64})/.exec(r.uri);
    if (r.method === 'GET' && match) blobGets.set(match[1]!, (blobGets.get(match[1]!) ?? 0) + 1);
  }
  assert.equal(blobGets.size, 4, 'three layers and a config');
  for (const [digest, count] of blobGets) assert.equal(count, 1, `${digest} fetched ${count} times`);
  assert.equal(await goBuilds(), 1, 'one go build for one platform across three instances');
});

test('the instance holding a build lease is killed: another instance takes over and the pull succeeds', { timeout: 300_000 }, async () => {
  const [holder, survivor] = [instances[1]!, instances[2]!];
  const buildsBefore = await goBuilds();
  const abandoned = pull(holder, `ko/${MODULE}`, 'v0.2.0').catch((err: Error) => ({ status: 0, body: err.message }) as Pulled);
  // Until the holder's go build has started, it holds the lease and is mid-build.
  while ((await goBuilds()) === buildsBefore) await sleep(50);
  holder.child.kill('SIGKILL');
  assert.equal((await abandoned).status, 0, 'the killed instance answered nothing');

  const result = await pull(survivor, `ko/${MODULE}`, 'v0.2.0');
  assert.equal(result.status, 200, result.body);
  assert.equal(await goBuilds(), buildsBefore + 2, 'the survivor built it again after the lease expired');
  // The first instance's image and the survivor's agree: a third instance gets the same.
  const again = await pull(instances[0]!, `ko/${MODULE}`, 'v0.2.0');
  assert.equal(again.digest, result.digest);
});
