import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from './support/upstream-images.js';
import { startTokenServer, type TokenServer } from './support/token-server.js';
import { skopeoCopy, skopeoInspect } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import { request, registryError } from './support/http.js';

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');
/** How a mirror path names a registry with a port: `127.0.0.1:5000` → `127.0.0.1-5000`. */
const mirrorPath = (host: string) => host.replace(':', '-');

let upstream: UpstreamRegistry;
let server: TestServer;
let work: string;
let single: WrittenLayout;
let multi: WrittenLayout;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-mirror-'));
  upstream = await startUpstreamRegistry();
  single = await writeOciLayout(await layoutDir(), 'v1', [
    { layers: [await tarLayer({ 'etc/base': 'base layer\n' }), await tarLayer({ 'app/run': 'app layer\n' })] },
  ]);
  await pushOciLayout(single, `${upstream.host}/lib/app:v1`);
  multi = await writeOciLayout(await layoutDir(), 'v1', [
    { layers: [await tarLayer({ 'arch': 'amd64\n' })], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [await tarLayer({ 'arch': 'arm64\n' })], platform: { os: 'linux', architecture: 'arm64' } },
  ]);
  await pushOciLayout(multi, `${upstream.host}/lib/multi:v1`);
  // Every tag request asks the upstream (no freshness window): stale-if-error below needs it.
  server = await startKontain({ KONTAIN_INSECURE_REGISTRIES: upstream.host, KONTAIN_TTL: '3600', KONTAIN_MIRROR_TAG_TTL: '0' });
});
after(async () => {
  await server.stop();
  await upstream.stop();
  await rm(work, { recursive: true, force: true });
});

async function upstreamBlobGets(): Promise<number> {
  return (await upstream.requests()).filter((r) => r.method === 'GET' && r.uri.includes('/blobs/')).length;
}

test('skopeo pulls through the mirror by tag and gets the upstream digest and bytes', async () => {
  const dir = path.join(work, 'by-tag');
  await skopeoCopy(`docker://${server.address}/mirror/${mirrorPath(upstream.host)}/lib/app:v1`, `oci:${dir}:t`);
  const layout = new OciLayout(dir);
  assert.equal(await layout.manifestDigest('t'), single.top.digest);
  for (const layer of single.images[0]!.layers) {
    assert.deepEqual(await layout.blob(layer.digest), single.blobs.get(layer.digest));
  }
});

test('a second pull makes no blob request upstream', async () => {
  await skopeoCopy(`docker://${server.address}/mirror/${mirrorPath(upstream.host)}/lib/app:v1`, `oci:${path.join(work, 'warm-prime')}:t`);
  const before = await upstreamBlobGets();
  await skopeoCopy(`docker://${server.address}/mirror/${mirrorPath(upstream.host)}/lib/app:v1`, `oci:${path.join(work, 'warm')}:t`);
  assert.equal(await upstreamBlobGets(), before);
});

test('by digest, and a two-platform index keeps its digest and platforms', async () => {
  const byDigest = path.join(work, 'by-digest');
  await skopeoCopy(`docker://${server.address}/mirror/${mirrorPath(upstream.host)}/lib/app@${single.top.digest}`, `oci:${byDigest}:t`);
  assert.equal(await new OciLayout(byDigest).manifestDigest('t'), single.top.digest);

  const all = path.join(work, 'multi');
  await skopeoCopy(`docker://${server.address}/mirror/${mirrorPath(upstream.host)}/lib/multi:v1`, `oci:${all}:t`, ['--all']);
  const layout = new OciLayout(all);
  assert.equal(await layout.manifestDigest('t'), multi.top.digest);
  const index = JSON.parse((await layout.blob(multi.top.digest)).toString()) as { manifests: Array<{ platform: { architecture: string } }> };
  assert.deepEqual(index.manifests.map((m) => m.platform.architecture), ['amd64', 'arm64']);
  for (const image of multi.images) {
    for (const layer of image.layers) assert.deepEqual(await layout.blob(layer.digest), multi.blobs.get(layer.digest));
  }
});

test('HEAD of a mirrored tag gives the upstream digest; tags/list comes from upstream', async () => {
  const head = await request(`${server.url}/v2/mirror/${mirrorPath(upstream.host)}/lib/multi/manifests/v1`, {
    method: 'HEAD',
    headers: { Accept: 'application/vnd.oci.image.index.v1+json' },
  });
  assert.equal(head.status, 200);
  assert.equal(head.headers['docker-content-digest'], multi.top.digest);
  const tags = await request(`${server.url}/v2/mirror/${mirrorPath(upstream.host)}/lib/multi/tags/list`);
  assert.equal(tags.status, 200);
  assert.deepEqual((JSON.parse(tags.body.toString()) as { tags: string[] }).tags, ['v1']);
});

test('concurrent clients of a cold blob share one upstream fetch and all get the bytes', async () => {
  const big = Buffer.alloc(3_000_000);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  const layout = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ big })] }]);
  await pushOciLayout(layout, `${upstream.host}/lib/shared:v1`);
  const layer = layout.images[0]!.layers[0]!;
  const url = `${server.url}/v2/mirror/${mirrorPath(upstream.host)}/lib/shared/blobs/${layer.digest}`;
  const results = await Promise.all(Array.from({ length: 5 }, () => request(url)));
  for (const res of results) {
    assert.equal(res.status, 200);
    assert.equal(sha256(res.body), layer.digest);
  }
  const fetches = (await upstream.requests()).filter((r) => r.method === 'GET' && r.uri.endsWith(`/blobs/${layer.digest}`));
  assert.equal(fetches.length, 1, 'one upstream GET for five clients');
  assert.equal((await server.store.statBlob(layer.digest))?.size, layer.size);
  const ranged = await request(url, { headers: { Range: 'bytes=10-19' } });
  assert.equal(ranged.status, 206);
  assert.deepEqual(ranged.body, layout.blobs.get(layer.digest)!.subarray(10, 20));
});

test('repeated mirror.<domain>/ prefixes are dropped', async () => {
  const named = await startKontain({ KONTAIN_INSECURE_REGISTRIES: upstream.host, KONTAIN_DOMAIN: 'kontain.test' });
  try {
    const res = await request(`${named.url}/v2/mirror.kontain.test/mirror.kontain.test/${mirrorPath(upstream.host)}/lib/app/manifests/v1`, {
      method: 'HEAD',
      headers: { Host: 'mirror.kontain.test', Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-content-digest'], single.top.digest);
  } finally {
    await named.stop();
  }
});

test('a blob corrupted upstream is refused and not stored', async () => {
  const layout = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ victim: 'x'.repeat(5000) })] }]);
  await pushOciLayout(layout, `${upstream.host}/lib/corrupt:v1`);
  const layer = layout.images[0]!.layers[0]!;
  const file = upstream.blobDataPath(layer.digest);
  const bytes = await readFile(file);
  bytes[bytes.length - 20] ^= 0xff;
  await writeFile(file, bytes);
  await assert.rejects(skopeoCopy(`docker://${server.address}/mirror/${mirrorPath(upstream.host)}/lib/corrupt:v1`, `oci:${path.join(work, 'corrupt')}:t`));
  assert.equal(await server.store.statBlob(layer.digest), undefined);
  // Streamed while verified: the status went out before the last byte, so the refusal is a cut connection.
  const again = await request(`${server.url}/v2/mirror/${mirrorPath(upstream.host)}/lib/corrupt/blobs/${layer.digest}`).catch((err: Error) => err);
  assert.ok(again instanceof Error || sha256(again.body) !== layer.digest, 'the corrupt bytes are not delivered whole');
  assert.equal(await server.store.statBlob(layer.digest), undefined);
});

describe('refusals', () => {
  test('a loopback registry that is not allowlisted is refused before any connection', async () => {
    for (const name of ['127.0.0.2-5000/x', `localhost-${upstream.host.split(':')[1]}/lib/app`]) {
      const res = await request(`${server.url}/v2/mirror/${name}/manifests/v1`);
      assert.equal(res.status, 403, res.body.toString());
      assert.equal(registryError(res).code, 'DENIED');
      assert.match(registryError(res).message, /loopback/);
    }
  });

  test('a bad reference or a missing image name is a clear 4xx', async () => {
    const empty = await request(`${server.url}/v2/mirror/manifests/latest`);
    assert.equal(empty.status, 400);
    assert.match(registryError(empty).message, /name an upstream image/);
    const unknown = await request(`${server.url}/v2/mirror/${mirrorPath(upstream.host)}/lib/nothing/manifests/v1`);
    assert.equal(unknown.status, 404);
    assert.equal(registryError(unknown).code, 'MANIFEST_UNKNOWN');
    assert.match(registryError(unknown).message, new RegExp(`upstream ${upstream.host.replace('.', '\\.')} answered 404`));
  });
});

describe('upstreams with auth', { timeout: 120_000 }, () => {
  const alice = { username: 'alice', password: 's3cret' };
  let basic: UpstreamRegistry;
  let tokens: TokenServer;
  let tokenUpstream: UpstreamRegistry;
  let withCreds: TestServer;
  let withoutCreds: TestServer;

  before(async () => {
    basic = await startUpstreamRegistry({ htpasswd: alice });
    await pushOciLayout(single, `${basic.host}/private/app:v1`, { creds: alice });
    tokens = await startTokenServer({ users: { [alice.username]: alice.password } });
    tokenUpstream = await startUpstreamRegistry({ token: tokens.registryAuth });
    await pushOciLayout(single, `${tokenUpstream.host}/private/app:v1`, { creds: alice });
    const config = path.join(work, 'docker-config.json');
    const auth = Buffer.from(`${alice.username}:${alice.password}`).toString('base64');
    await writeFile(config, JSON.stringify({ auths: { [basic.host]: { auth }, [tokenUpstream.host]: { auth } } }));
    // The token realm is on loopback too, so it is allowlisted like the registries.
    const insecure = `${basic.host},${tokenUpstream.host},${new URL(tokens.url).host}`;
    withCreds = await startKontain({ KONTAIN_INSECURE_REGISTRIES: insecure, KONTAIN_DOCKER_CONFIG: config });
    withoutCreds = await startKontain({ KONTAIN_INSECURE_REGISTRIES: insecure });
  });
  after(async () => {
    await withCreds.stop();
    await withoutCreds.stop();
    await basic.stop();
    await tokenUpstream.stop();
    await tokens.stop();
  });

  for (const which of ['htpasswd', 'token'] as const) {
    test(`${which}: pulls with configured credentials, DENIED without`, async () => {
      const host = which === 'htpasswd' ? basic.host : tokenUpstream.host;
      const info = await skopeoInspect(`docker://${withCreds.address}/mirror/${mirrorPath(host)}/private/app:v1`);
      assert.equal(info.Digest, single.top.digest);
      const res = await request(`${withoutCreds.url}/v2/mirror/${mirrorPath(host)}/private/app/manifests/v1`);
      assert.equal(res.status, 403);
      assert.equal(registryError(res).code, 'DENIED');
      assert.match(registryError(res).message, new RegExp(`upstream ${host.replace('.', '\\.')} answered 401`));
    });
  }
});

/** The inode of the one pointer file of a mirrored repository in a server's store. */
async function pointerInode(store: string, repository: string): Promise<{ ino: number; text: string }> {
  const dir = path.join(store, 'pointers', 'mirror');
  const names = (await readdir(dir)).filter((name) => name.endsWith('.json') && !name.endsWith('.meta.json') && decodeURIComponent(name).includes(`/${repository}:`));
  assert.equal(names.length, 1, `one pointer for ${repository}: ${names.join(" ")}`);
  const file = path.join(dir, names[0]!);
  return { ino: (await stat(file)).ino, text: await readFile(file, 'utf8') };
}

const tagDigest = async (base: string, repository: string) => {
  const answer = await request(`${base}/v2/mirror/${mirrorPath(upstream.host)}/${repository}/manifests/v1`, {
    method: 'HEAD',
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' },
  });
  assert.equal(answer.status, 200);
  return answer.headers['docker-content-digest'];
};

test('without a freshness window a moved tag is seen at once, and an unchanged tag keeps its pointer object', async () => {
  await pushOciLayout(single, `${upstream.host}/lib/moving:v1`);
  assert.equal(await tagDigest(server.url, 'lib/moving'), single.top.digest);
  const first = await pointerInode(server.storeDir!, 'lib/moving');
  assert.equal(await tagDigest(server.url, 'lib/moving'), single.top.digest);
  assert.deepEqual(await pointerInode(server.storeDir!, 'lib/moving'), first, 'the pointer was not rewritten');
  await pushOciLayout(multi, `${upstream.host}/lib/moving:v1`);
  assert.equal(await tagDigest(server.url, 'lib/moving'), multi.top.digest);
  const moved = await pointerInode(server.storeDir!, 'lib/moving');
  assert.match(moved.text, new RegExp(multi.top.digest));
});

test('within KONTAIN_MIRROR_TAG_TTL a tag is answered without asking the upstream, moved or not', async () => {
  const windowed = await startKontain({ KONTAIN_INSECURE_REGISTRIES: upstream.host, KONTAIN_MIRROR_TAG_TTL: '3600' });
  try {
    await pushOciLayout(single, `${upstream.host}/lib/window:v1`);
    const asked = async () => (await upstream.requests()).filter((r) => r.uri.includes('/lib/window/manifests/v1')).length;
    assert.equal(await tagDigest(windowed.url, 'lib/window'), single.top.digest);
    const afterFirst = await asked();
    assert.ok(afterFirst >= 1, 'the first request resolved the tag upstream');
    await pushOciLayout(multi, `${upstream.host}/lib/window:v1`);
    const afterPush = await asked();
    for (let i = 0; i < 3; i++) assert.equal(await tagDigest(windowed.url, 'lib/window'), single.top.digest);
    assert.equal(await asked(), afterPush, 'no tag request reached the upstream inside the window');
  } finally {
    await windowed.stop();
  }
});

// Last: it stops the upstream.
test('with the upstream stopped, a tag resolved before still pulls (stale-if-error)', { timeout: 120_000 }, async () => {
  await skopeoCopy(`docker://${server.address}/mirror/${mirrorPath(upstream.host)}/lib/app:v1`, `oci:${path.join(work, 'before-stop')}:t`);
  await upstream.stop();
  const dir = path.join(work, 'stale');
  await skopeoCopy(`docker://${server.address}/mirror/${mirrorPath(upstream.host)}/lib/app:v1`, `oci:${dir}:t`);
  const layout = new OciLayout(dir);
  assert.equal(await layout.manifestDigest('t'), single.top.digest);
  const manifest = await layout.manifest('t');
  for (const layer of manifest.layers) assert.equal(sha256(await layout.blob(layer.digest)), layer.digest);
});
