/**
 * The ko host end to end: Go modules in a file:// module proxy written here, a
 * two-platform base image in the test upstream registry, builds by the machine's Go
 * toolchain, pulls by skopeo, unpacking by umoci.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { ImageConfig, ImageIndex, ImageManifest } from '../src/oci/types.js';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer } from './support/upstream-images.js';
import { moduleZipPath, proxyURL, writeGoModule } from './support/go-module-proxy.js';
import { exec, skopeoCopy, umociUnpack } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import { registryError, request, type HttpResult } from './support/http.js';
import { nodeArgsFor, siblingModule } from './support/node-child.js';

const run = promisify(execFile);
const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT = { accept: `${OCI_INDEX}, ${OCI_MANIFEST}` };
const BASE_NAME_ANNOTATION = 'org.opencontainers.image.base.name';
const BASE_DIGEST_ANNOTATION = 'org.opencontainers.image.base.digest';

const HELLO = 'example.com/hello';
const GO_MOD = (module: string) => `module ${module}\n\ngo 1.19\n`;
const HELLO_MAIN = 'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n\tb, err := os.ReadFile(os.Getenv("KO_DATA_PATH") + "/greeting.txt")\n\tif err != nil {\n\t\tpanic(err)\n\t}\n\tfmt.Print(string(b))\n}\n';
const OTHER_MAIN = 'package main\n\nfunc main() { println("other") }\n';
const GREETING = { 'v0.1.0': 'hello from v0.1.0\n', 'v0.2.0': 'hello from v0.2.0, the latest\n' } as const;

const ARCHES = ['amd64', 'arm64'] as const;
type Arch = (typeof ARCHES)[number];
/** ELF e_machine: EM_X86_64, EM_AARCH64. */
const ELF_MACHINE: Record<Arch, number> = { amd64: 62, arm64: 183 };
const BASE_PATH = '/usr/local/bin:/usr/bin:/bin';
const BASE_RELEASE = (arch: Arch) => `base image for ${arch}\n`;

// Kept between runs on purpose: Go's build cache makes later runs' builds quick.
const GO_CACHE = path.join(tmpdir(), 'kontain-test-go-cache');
/** A cold cross-compilation of the standard library for two platforms on two cores takes minutes. */
const BUILD_TIMEOUT_MS = 10 * 60_000;

interface BaseFixture {
  ref: string;
  indexDigest: string;
  images: Array<{ arch: Arch; manifestDigest: string; layerDigests: string[] }>;
}

let upstream: UpstreamRegistry;
let server: TestServer;
let proxyDir: string;
let work: string;
let base: BaseFixture;

/**
 * The base: an OCI index of a linux/amd64 and a linux/arm64 image, each one layer with
 * `etc/base-release` naming its architecture, config Env PATH and Cmd ["/bin/base"].
 * Written byte by byte so every digest is known, then pushed with digests kept.
 */
async function pushBaseImage(destination: string): Promise<BaseFixture> {
  const dir = await layoutDir();
  const blobDir = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  const put = async (data: Buffer) => {
    const digest = sha256(data);
    await writeFile(path.join(blobDir, digest.slice('sha256:'.length)), data);
    return { digest, size: data.length };
  };
  const images: BaseFixture['images'] = [];
  const entries = [];
  for (const arch of ARCHES) {
    const layer = await tarLayer({ 'etc/base-release': BASE_RELEASE(arch) });
    const layerBlob = await put(gzipSync(layer));
    const config = {
      created: '2024-01-01T00:00:00Z',
      architecture: arch,
      os: 'linux',
      config: { Env: [`PATH=${BASE_PATH}`], Cmd: ['/bin/base'] },
      rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'test base layer' }],
    };
    const configBlob = await put(Buffer.from(JSON.stringify(config)));
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configBlob },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layerBlob }],
    };
    const manifestBlob = await put(Buffer.from(JSON.stringify(manifest)));
    images.push({ arch, manifestDigest: manifestBlob.digest, layerDigests: [layerBlob.digest] });
    entries.push({ mediaType: OCI_MANIFEST, ...manifestBlob, platform: { architecture: arch, os: 'linux' } });
  }
  const indexBlob = await put(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries })));
  const tag = 'v1';
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: OCI_INDEX, ...indexBlob, annotations: { 'org.opencontainers.image.ref.name': tag } }] }));
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await pushOciLayout({ dir, tag }, destination);
  return { ref: destination, indexDigest: indexBlob.digest, images };
}

function koEnv(): Record<string, string> {
  return {
    KONTAIN_GOPROXY: proxyURL(proxyDir),
    KONTAIN_KO_BASE: base.ref,
    KONTAIN_INSECURE_REGISTRIES: upstream.host,
    KONTAIN_KO_CACHE: GO_CACHE,
    // These tests wait for their builds; the hold is tested on its own below.
    KONTAIN_BUILD_HOLD: '600',
  };
}

before(
  async () => {
    // Not a skip: the ko host is a feature of kontain and this is its test (test/setup.sh installs golang-go).
    await exec('go', ['version'], 30_000).catch((err: Error) => {
      throw new Error(`the ko test needs the go command on PATH (install golang-go; test/setup.sh does): ${err.message}`);
    });
    work = await mkdtemp(path.join(tmpdir(), 'kontain-ko-test-'));
    proxyDir = path.join(work, 'goproxy');
    for (const version of ['v0.1.0', 'v0.2.0'] as const) {
      await writeGoModule(proxyDir, HELLO, version, {
        'go.mod': GO_MOD(HELLO),
        'cmd/hello/main.go': HELLO_MAIN,
        'cmd/hello/kodata/greeting.txt': GREETING[version],
        'cmd/other/main.go': OTHER_MAIN,
      });
    }
    await writeGoModule(proxyDir, 'example.com/broken', 'v0.1.0', {
      'go.mod': GO_MOD('example.com/broken'),
      'main.go': 'package main\n\nfunc main() {\n\tundefinedThing()\n}\n',
    });
    await writeGoModule(
      proxyDir,
      'example.com/evil',
      'v0.1.0',
      { 'go.mod': GO_MOD('example.com/evil'), 'main.go': 'package main\n\nfunc main() {}\n' },
      { extraZipEntries: [{ name: 'example.com/evil@v0.1.0/../escape.go', data: Buffer.from('package main\n') }] },
    );

    upstream = await startUpstreamRegistry();
    base = await pushBaseImage(`${upstream.host}/base/static:v1`);
    server = await startKontain(koEnv());
  },
  { timeout: 180_000 },
);

after(async () => {
  await server?.stop();
  await upstream?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/**
 * GET of a ko manifest with a long time limit: the first request of a version builds it,
 * and nothing comes back until the build is done (http.ts's request gives up after 60 s idle).
 */
function getManifest(url: string, timeoutMs = BUILD_TIMEOUT_MS): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: ACCEPT, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} took longer than ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** `/v2/ko/<import path>/manifests/<tag>` for `<import path>:<tag>`. */
function manifestURL(serverURL: string, ref: string): string {
  const at = ref.lastIndexOf(':');
  return `${serverURL}/v2/ko/${ref.slice(0, at)}/manifests/${ref.slice(at + 1)}`;
}

/** Builds (or finds) `ref` and asserts it is answered; returns the top digest. */
async function built(ref: string): Promise<string> {
  const res = await getManifest(manifestURL(server.url, ref));
  assert.equal(res.status, 200, `${ref}: ${res.body.toString()}`);
  const digest = res.headers['docker-content-digest'];
  assert.equal(typeof digest, 'string');
  return digest as string;
}

/** Names of the entries of a gzip layer, leading `/` and trailing `/` dropped (ko writes absolute names). */
async function layerEntries(blob: Buffer): Promise<Map<string, tar.Header>> {
  const extract = tar.extract();
  const entries = new Map<string, tar.Header>();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      entries.set(header.name.replace(/^\/+/, '').replace(/\/+$/, ''), header);
      stream.on('end', next);
      stream.resume();
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  extract.end(gunzipSync(blob));
  await done;
  return entries;
}

/** Tags `digest` in the layout as `tag` so umoci can unpack that one platform image. */
async function tagInLayout(layout: OciLayout, digest: string, size: number, tag: string): Promise<void> {
  const index = await layout.index();
  index.manifests.push({ mediaType: OCI_MANIFEST, digest, size, annotations: { 'org.opencontainers.image.ref.name': tag } });
  await writeFile(path.join(layout.dir, 'index.json'), JSON.stringify(index));
}

interface PulledImage {
  rootfs: string;
  manifest: ImageManifest;
  config: ImageConfig;
}

/** skopeo pulls one platform of `ref` from kontain; umoci unpacks it. */
async function pullPlatform(ref: string, arch: Arch, name: string): Promise<PulledImage> {
  const dir = path.join(work, name);
  await skopeoCopy(`docker://${server.address}/ko/${ref}`, `oci:${dir}:t`, ['--override-arch', arch, '--override-os', 'linux']);
  const layout = new OciLayout(dir);
  const manifest = await layout.manifest('t');
  const config = JSON.parse((await layout.blob(manifest.config.digest)).toString('utf8')) as ImageConfig;
  await umociUnpack(`${dir}:t`, path.join(work, `${name}-bundle`));
  return { rootfs: path.join(work, `${name}-bundle`, 'rootfs'), manifest, config };
}

async function elfMachine(file: string): Promise<number> {
  const head = (await readFile(file)).subarray(0, 20);
  assert.deepEqual([...head.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], `${file} is an ELF file`);
  return head.readUInt16LE(18);
}

describe('ko host', { timeout: 20 * 60_000 }, () => {
  const HELLO_V1 = `${HELLO}/cmd/hello:v0.1.0`;
  let indexDigest: string;
  let all: OciLayout;
  let index: ImageIndex;

  test('ko/<module>/cmd/hello:v0.1.0 is an index of the base platforms, in the base order', { timeout: BUILD_TIMEOUT_MS + 120_000 }, async () => {
    // The build happens on this request (bounded by BUILD_TIMEOUT_MS); skopeo then pulls what is built.
    const built1 = await built(HELLO_V1);
    const dir = path.join(work, 'all');
    await skopeoCopy(`docker://${server.address}/ko/${HELLO_V1}`, `oci:${dir}:t`, ['--all']);
    all = new OciLayout(dir);
    indexDigest = await all.manifestDigest('t');
    assert.equal(indexDigest, built1);
    index = JSON.parse((await all.blob(indexDigest)).toString('utf8')) as ImageIndex;
    assert.equal(index.mediaType, OCI_INDEX);
    assert.deepEqual(
      index.manifests.map((m) => m.platform),
      ARCHES.map((architecture) => ({ architecture, os: 'linux' })),
    );
    assert.equal(index.annotations?.[BASE_NAME_ANNOTATION], base.ref);
    assert.equal(index.annotations?.[BASE_DIGEST_ANNOTATION], base.indexDigest);
  });

  for (const [i, arch] of ARCHES.entries()) {
    test(`the ${arch} image: the ${arch} binary at /ko-app/hello, kodata at KO_DATA_PATH, on the ${arch} base`, async () => {
      assert.ok(index, 'the index was pulled (first test)');
      const entry = index.manifests[i]!;
      assert.equal(entry.platform?.architecture, arch);
      const manifest = JSON.parse((await all.blob(entry.digest)).toString('utf8')) as ImageManifest;
      const config = JSON.parse((await all.blob(manifest.config.digest)).toString('utf8')) as ImageConfig;
      const baseImage = base.images.find((b) => b.arch === arch)!;

      // Layers: the base's, then kodata, then the binary.
      assert.equal(manifest.layers.length, baseImage.layerDigests.length + 2);
      assert.deepEqual(manifest.layers.slice(0, baseImage.layerDigests.length).map((l) => l.digest), baseImage.layerDigests);
      const kodata = await layerEntries(await all.blob(manifest.layers.at(-2)!.digest));
      assert.ok(kodata.has('var/run/ko/greeting.txt'), `kodata layer entries: ${[...kodata.keys()].join(', ')}`);
      const binaryLayer = await layerEntries(await all.blob(manifest.layers.at(-1)!.digest));
      assert.ok(binaryLayer.has('ko-app/hello'), `binary layer entries: ${[...binaryLayer.keys()].join(', ')}`);

      assert.equal(manifest.annotations?.[BASE_NAME_ANNOTATION], base.ref);
      assert.equal(manifest.annotations?.[BASE_DIGEST_ANNOTATION], baseImage.manifestDigest);

      assert.equal(config.architecture, arch);
      assert.equal(config.os, 'linux');
      assert.deepEqual(config.config?.Entrypoint, ['/ko-app/hello']);
      assert.ok(config.config?.Cmd === undefined || config.config?.Cmd === null, `Cmd is cleared (the base has ["/bin/base"]), got ${JSON.stringify(config.config?.Cmd)}`);
      const env = config.config?.Env ?? [];
      assert.ok(env.includes('KO_DATA_PATH=/var/run/ko'), `Env ${JSON.stringify(env)}`);
      assert.deepEqual(env.filter((e) => e.startsWith('PATH=')), [`PATH=${BASE_PATH}:/ko-app`], `Env ${JSON.stringify(env)}`);
      assert.equal(config.author, 'github.com/ko-build/ko');

      await tagInLayout(all, entry.digest, entry.size, arch);
      const bundle = path.join(work, `all-${arch}-bundle`);
      await umociUnpack(`${all.dir}:${arch}`, bundle);
      const rootfs = path.join(bundle, 'rootfs');
      const binary = path.join(rootfs, 'ko-app', 'hello');
      const info = await stat(binary);
      assert.ok(info.isFile(), '/ko-app/hello is a regular file');
      assert.equal(info.mode & 0o7777, 0o555);
      assert.equal(await elfMachine(binary), ELF_MACHINE[arch]);
      assert.equal(await readFile(path.join(rootfs, 'var', 'run', 'ko', 'greeting.txt'), 'utf8'), GREETING['v0.1.0']);
      assert.equal(await readFile(path.join(rootfs, 'etc', 'base-release'), 'utf8'), BASE_RELEASE(arch));

      if (arch === 'amd64' && process.arch === 'x64') {
        // It is a working program: it prints the greeting it finds at KO_DATA_PATH.
        const { stdout } = await run(binary, [], { timeout: 30_000, env: { KO_DATA_PATH: path.join(rootfs, 'var', 'run', 'ko') } });
        assert.equal(stdout, GREETING['v0.1.0']);
      }
    });
  }

  test('a second pull answers the same index without building (the module zip is gone)', async () => {
    assert.ok(indexDigest, 'the first pull happened');
    const zip = moduleZipPath(proxyDir, HELLO, 'v0.1.0');
    const saved = await readFile(zip);
    await rm(zip);
    try {
      const dir = path.join(work, 'again');
      await skopeoCopy(`docker://${server.address}/ko/${HELLO_V1}`, `oci:${dir}:t`, ['--all']);
      assert.equal(await new OciLayout(dir).manifestDigest('t'), indexDigest);
      const res = await request(manifestURL(server.url, HELLO_V1), { headers: ACCEPT });
      assert.equal(res.status, 200, res.body.toString());
      assert.equal(res.headers['docker-content-digest'], indexDigest);
      // kontain.me's other spelling: the host name and a ko/ prefix.
      const prefixed = await request(`${server.url}/v2/ko/ko/${HELLO}/cmd/hello/manifests/v0.1.0`, { headers: ACCEPT });
      assert.equal(prefixed.status, 200, prefixed.body.toString());
      assert.equal(prefixed.headers['docker-content-digest'], indexDigest);
    } finally {
      await writeFile(zip, saved);
    }
  });

  test('latest is v0.2.0', { timeout: BUILD_TIMEOUT_MS + 120_000 }, async () => {
    await built(`${HELLO}/cmd/hello:latest`);
    const latest = await pullPlatform(`${HELLO}/cmd/hello:latest`, 'amd64', 'latest');
    assert.equal(await readFile(path.join(latest.rootfs, 'var', 'run', 'ko', 'greeting.txt'), 'utf8'), GREETING['v0.2.0']);
    const v2 = await built(`${HELLO}/cmd/hello:v0.2.0`);
    assert.equal(await built(`${HELLO}/cmd/hello:latest`), v2, 'latest and v0.2.0 are the same image');
  });

  test('another main package of the module builds too: /ko-app/other', { timeout: BUILD_TIMEOUT_MS + 120_000 }, async () => {
    await built(`${HELLO}/cmd/other:v0.1.0`);
    for (const arch of ARCHES) {
      const other = await pullPlatform(`${HELLO}/cmd/other:v0.1.0`, arch, `other-${arch}`);
      assert.deepEqual(other.config.config?.Entrypoint, ['/ko-app/other']);
      const binary = path.join(other.rootfs, 'ko-app', 'other');
      assert.equal(((await stat(binary)).mode & 0o7777), 0o555);
      assert.equal(await elfMachine(binary), ELF_MACHINE[arch]);
      assert.equal(await readFile(path.join(other.rootfs, 'etc', 'base-release'), 'utf8'), BASE_RELEASE(arch));
    }
  });

  test('what cannot be built is a registry error saying why', { timeout: BUILD_TIMEOUT_MS + 60_000 }, async () => {
    const cases: Array<{ ref: string; status: (s: number) => boolean; expect: string; code?: string; says: string | RegExp }> = [
      { ref: 'example.com/nope/cmd/x:v0.1.0', status: (s) => s === 404, expect: '404', code: 'MANIFEST_UNKNOWN', says: 'example.com/nope/cmd/x' },
      { ref: `${HELLO}/cmd/hello:v9.9.9`, status: (s) => s === 404, expect: '404', code: 'MANIFEST_UNKNOWN', says: 'v9.9.9' },
      { ref: `${HELLO}/cmd/missing:v0.1.0`, status: (s) => s === 404, expect: '404', code: 'MANIFEST_UNKNOWN', says: `${HELLO}/cmd/missing` },
      { ref: 'example.com/broken:v0.1.0', status: (s) => s === 422, expect: '422', says: 'undefined: undefinedThing' },
      { ref: 'example.com/evil:v0.1.0', status: (s) => s >= 400 && s < 500, expect: '4xx', says: /\.\.\/escape\.go/ },
    ];
    const failures: string[] = [];
    for (const c of cases) {
      const res = await getManifest(manifestURL(server.url, c.ref));
      const body = res.body.toString();
      if (!c.status(res.status)) {
        failures.push(`${c.ref}: status ${res.status}, expected ${c.expect}: ${body}`);
        continue;
      }
      let error: { code: string; message: string };
      try {
        error = registryError(res);
      } catch (err) {
        failures.push(`${c.ref}: not a registry error body (${(err as Error).message}): ${body}`);
        continue;
      }
      if (c.code && error.code !== c.code) failures.push(`${c.ref}: code ${error.code}, expected ${c.code}`);
      const says = typeof c.says === 'string' ? error.message.includes(c.says) : c.says.test(error.message);
      if (!says) failures.push(`${c.ref}: message does not name ${String(c.says)}: ${JSON.stringify(error.message)}`);
    }
    assert.deepEqual(failures, []);
  });

  test('with no go on the PATH the ko host answers 503 saying it needs a Go toolchain', { timeout: 120_000 }, async () => {
    // A separate kontain process whose PATH has no go (node is started by its absolute path).
    const store = path.join(work, 'no-go-store');
    const { args, path: entry } = nodeArgsFor(siblingModule(import.meta.url, '../cmd/kontain'));
    const env: NodeJS.ProcessEnv = { ...process.env, ...koEnv(), PATH: '/nonexistent', PORT: '0', KONTAIN_STORE: store, KONTAIN_LOG_LEVEL: 'info' };
    delete env.KONTAIN_GO;
    const child = spawn(process.execPath, [...args, entry, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`kontain did not start in 60 s: ${output}`)), 60_000);
        const onData = (chunk: Buffer) => {
          output += chunk.toString();
          const match = /"port":(\d+)/.exec(output);
          if (match) {
            clearTimeout(timer);
            resolve(Number(match[1]));
          }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`kontain exited (${code}) before listening: ${output}`));
        });
      });
      const res = await getManifest(manifestURL(`http://127.0.0.1:${port}`, `${HELLO}/cmd/hello:v0.2.0`), 60_000);
      assert.equal(res.status, 503, res.body.toString());
      const error = registryError(res);
      assert.equal(error.code, 'UNAVAILABLE');
      assert.match(error.message, /ko host needs a Go toolchain/);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }
    }
  });

  test('a build slower than the hold answers 404 building with Retry-After, then the same image', { timeout: BUILD_TIMEOUT_MS + 120_000 }, async () => {
    const expected = await built(`${HELLO}/cmd/hello:v0.2.0`);
    // A fresh store, and no hold at all: every build is slower than it.
    const slow = await startKontain({ ...koEnv(), KONTAIN_BUILD_HOLD: '0' });
    try {
      const url = manifestURL(slow.url, `${HELLO}/cmd/hello:v0.2.0`);
      const first = await request(url, { headers: ACCEPT });
      assert.equal(first.status, 404, first.body.toString());
      const error = registryError(first);
      assert.equal(error.code, 'MANIFEST_UNKNOWN');
      assert.match(error.message, /^building example\.com\/hello\/cmd\/hello@v0\.2\.0.*, pull again/);
      assert.ok(Number(first.headers['retry-after']) >= 1, JSON.stringify(first.headers));
      let res = first;
      const deadline = Date.now() + BUILD_TIMEOUT_MS;
      while (res.status === 404 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
        res = await request(url, { headers: ACCEPT });
      }
      assert.equal(res.status, 200, res.body.toString());
      assert.equal(res.headers['docker-content-digest'], expected);
    } finally {
      await slow.stop();
    }
  });

  // Last: it stops the base registry.
  test('a built image still pulls while the base registry is down', async () => {
    assert.ok(indexDigest, 'the first pull happened');
    await upstream.stop();
    const res = await request(manifestURL(server.url, HELLO_V1), { headers: ACCEPT });
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.headers['docker-content-digest'], indexDigest);
  });
});
