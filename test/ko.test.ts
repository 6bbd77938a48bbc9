/**
 * The ko host end to end: Go modules in a file:// module proxy written here, a
 * two-platform base image in Debian's docker-registry, builds by Debian's Go toolchain,
 * pulls by skopeo, unpacking by umoci.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ImageConfig, ImageIndex, ImageManifest } from '../src/oci/types.js';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from './support/upstream-images.js';
import { moduleZipPath, proxyURL, writeGoModule } from './support/go-module-proxy.js';
import { exec, skopeoCopy, umociUnpack } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import { registryError, request } from './support/http.js';

const run = promisify(execFile);
const HELLO = 'example.com/hello';
const GO_MOD = (module: string) => `module ${module}\n\ngo 1.19\n`;
const HELLO_MAIN = 'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n\tb, _ := os.ReadFile(os.Getenv("KO_DATA_PATH") + "/greeting.txt")\n\tfmt.Print(string(b))\n}\n';
const OTHER_MAIN = 'package main\n\nfunc main() { println("other") }\n';
const GREETING = { 'v0.1.0': 'hello from v0.1.0\n', 'v0.2.0': 'hello from v0.2.0\n' } as const;
const ELF_MACHINE = { amd64: 62, arm64: 183 } as const;
const ACCEPT = { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' };
// Kept between runs on purpose: Go's build cache makes the second run's builds quick.
const GO_CACHE = path.join(tmpdir(), 'kontain-test-go-cache');

let upstream: UpstreamRegistry;
let server: TestServer;
let proxyDir: string;
let base: WrittenLayout;

before(async () => {
  await exec('go', ['version']).catch(() => {
    throw new Error('the ko tests need Go: install golang-go (test/setup.sh does so as root)');
  });
  proxyDir = await mkdtemp(path.join(tmpdir(), 'kontain-goproxy-'));
  for (const version of ['v0.1.0', 'v0.2.0'] as const) {
    await writeGoModule(proxyDir, HELLO, version, {
      'go.mod': GO_MOD(HELLO),
      'cmd/hello/main.go': HELLO_MAIN,
      'cmd/hello/kodata/greeting.txt': GREETING[version],
      'cmd/other/main.go': OTHER_MAIN,
    });
  }
  await writeGoModule(proxyDir, 'example.com/broken', 'v0.1.0', { 'go.mod': GO_MOD('example.com/broken'), 'main.go': 'package main\n\nfunc main() { undefinedThing() }\n' });
  await writeGoModule(proxyDir, 'example.com/evil', 'v0.1.0', { 'go.mod': GO_MOD('example.com/evil'), 'main.go': 'package main\n\nfunc main() {}\n' }, {
    extraZipEntries: [{ name: 'example.com/evil@v0.1.0/../escape.go', data: 'package main\n' }],
  });

  upstream = await startUpstreamRegistry();
  base = await writeOciLayout(await layoutDir(), 'v1', [
    { layers: [await tarLayer({ 'etc/base-release': 'base for amd64\n' })], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [await tarLayer({ 'etc/base-release': 'base for arm64\n' })], platform: { os: 'linux', architecture: 'arm64' } },
  ]);
  await pushOciLayout(base, `${upstream.host}/base/static:v1`);
  server = await startKontain({
    KONTAIN_GOPROXY: proxyURL(proxyDir),
    KONTAIN_KO_BASE: `${upstream.host}/base/static:v1`,
    KONTAIN_INSECURE_REGISTRIES: upstream.host,
    KONTAIN_KO_CACHE: GO_CACHE,
  });
});

after(async () => {
  await server?.stop();
  await upstream?.stop();
  if (proxyDir) await rm(proxyDir, { recursive: true, force: true });
});

/** Pulls one platform of a ko image and unpacks it. */
async function pullPlatform(ref: string, arch: 'amd64' | 'arm64'): Promise<{ rootfs: string; config: ImageConfig; manifest: ImageManifest; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-ko-pull-'));
  await skopeoCopy(`docker://${server.address}/ko/${ref}`, `oci:${dir}/layout:t`, ['--override-arch', arch, '--override-os', 'linux']);
  const layout = new OciLayout(path.join(dir, 'layout'));
  const manifest = await layout.manifest('t');
  const config = JSON.parse((await layout.blob(manifest.config.digest)).toString('utf8')) as ImageConfig;
  await umociUnpack(`${dir}/layout:t`, path.join(dir, 'bundle'));
  return { rootfs: path.join(dir, 'bundle', 'rootfs'), config, manifest, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

async function manifestOf(ref: string): Promise<{ status: number; body: Buffer; digest?: string }> {
  const [name, tag] = ref.split(':');
  const res = await request(`${server.url}/v2/ko/${name}/manifests/${tag}`, { headers: ACCEPT });
  return { status: res.status, body: res.body, digest: res.headers['docker-content-digest'] as string | undefined };
}

describe('ko host', { timeout: 15 * 60_000 }, () => {
  let indexDigest: string;

  test('builds the package for every base platform into an index, the ko way', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kontain-ko-all-'));
    try {
      await skopeoCopy(`docker://${server.address}/ko/${HELLO}/cmd/hello:v0.1.0`, `oci:${dir}:t`, ['--all']);
      const layout = new OciLayout(dir);
      indexDigest = await layout.manifestDigest('t');
      const index = JSON.parse((await layout.blob(indexDigest)).toString('utf8')) as ImageIndex;
      assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
      assert.deepEqual(index.manifests.map((m) => m.platform), base.images.map((i) => i.manifest.platform));
      assert.equal(index.annotations?.['org.opencontainers.image.base.name'], `${upstream.host}/base/static:v1`);
      assert.equal(index.annotations?.['org.opencontainers.image.base.digest'], base.top.digest);
      for (const [i, entry] of index.manifests.entries()) {
        const manifest = JSON.parse((await layout.blob(entry.digest)).toString('utf8')) as ImageManifest;
        assert.equal(manifest.annotations?.['org.opencontainers.image.base.digest'], base.images[i]!.manifest.digest);
        // Base layers first, then kodata, then the binary.
        assert.deepEqual(manifest.layers.slice(0, -2).map((l) => l.digest), base.images[i]!.layers.map((l) => l.digest));
        assert.equal(manifest.layers.length, base.images[i]!.layers.length + 2);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const arch of ['amd64', 'arm64'] as const) {
    test(`the ${arch} image runs the ${arch} binary from /ko-app with kodata at KO_DATA_PATH`, async () => {
      const pulled = await pullPlatform(`${HELLO}/cmd/hello:v0.1.0`, arch);
      try {
        const binary = path.join(pulled.rootfs, 'ko-app', 'hello');
        const info = await stat(binary);
        assert.ok(info.isFile());
        assert.equal(info.mode & 0o777, 0o555);
        const head = (await readFile(binary)).subarray(0, 20);
        assert.deepEqual([...head.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], 'an ELF file');
        assert.equal(head.readUInt16LE(18), ELF_MACHINE[arch]);
        assert.equal(await readFile(path.join(pulled.rootfs, 'var', 'run', 'ko', 'greeting.txt'), 'utf8'), GREETING['v0.1.0']);
        assert.equal(await readFile(path.join(pulled.rootfs, 'etc', 'base-release'), 'utf8'), `base for ${arch}\n`);
        assert.equal(pulled.config.architecture, arch);
        assert.deepEqual(pulled.config.config?.Entrypoint, ['/ko-app/hello']);
        // The base has Cmd ["/bin/sh"] and no Env: ko clears the one and makes the other.
        assert.ok(!pulled.config.config?.Cmd, `Cmd cleared, got ${JSON.stringify(pulled.config.config?.Cmd)}`);
        assert.deepEqual(pulled.config.config?.Env, ['PATH=/ko-app', 'KO_DATA_PATH=/var/run/ko']);
        assert.equal(pulled.config.author, 'github.com/ko-build/ko');
      } finally {
        await pulled.cleanup();
      }
    });
  }

  test('the amd64 binary prints the greeting it finds at KO_DATA_PATH', async () => {
    const pulled = await pullPlatform(`${HELLO}/cmd/hello:v0.1.0`, 'amd64');
    try {
      if (process.arch !== 'x64') return; // only an amd64 machine runs it
      const { stdout } = await run(path.join(pulled.rootfs, 'ko-app', 'hello'), [], { timeout: 30_000, env: { KO_DATA_PATH: path.join(pulled.rootfs, 'var', 'run', 'ko') } });
      assert.equal(stdout, GREETING['v0.1.0']);
    } finally {
      await pulled.cleanup();
    }
  });

  test('a second pull answers the same image without building again (the module zip is not needed)', async () => {
    const zip = moduleZipPath(proxyDir, HELLO, 'v0.1.0');
    const saved = await readFile(zip);
    await rm(zip);
    try {
      const again = await manifestOf(`${HELLO}/cmd/hello:v0.1.0`);
      assert.equal(again.status, 200, again.body.toString());
      assert.equal(again.digest, indexDigest);
    } finally {
      await writeFile(zip, saved);
    }
  });

  test('latest is the highest release; another main package of the module builds too', async () => {
    const latest = await pullPlatform(`${HELLO}/cmd/hello:latest`, 'amd64');
    try {
      assert.equal(await readFile(path.join(latest.rootfs, 'var', 'run', 'ko', 'greeting.txt'), 'utf8'), GREETING['v0.2.0']);
    } finally {
      await latest.cleanup();
    }
    const other = await pullPlatform(`${HELLO}/cmd/other:v0.2.0`, 'arm64');
    try {
      assert.equal((await readFile(path.join(other.rootfs, 'ko-app', 'other'))).readUInt16LE(18), ELF_MACHINE.arm64);
      assert.deepEqual(other.config.config?.Entrypoint, ['/ko-app/other']);
    } finally {
      await other.cleanup();
    }
  });

  test('what cannot be built is a clear registry error', async () => {
    const cases: Array<[string, number, string, RegExp]> = [
      ['example.com/nope/cmd/x:v0.1.0', 404, 'MANIFEST_UNKNOWN', /no module provides example\.com\/nope\/cmd\/x/],
      [`${HELLO}/cmd/hello:v9.9.9`, 404, 'MANIFEST_UNKNOWN', /example\.com\/hello has no version v9\.9\.9.*v0\.1\.0, v0\.2\.0/],
      [`${HELLO}/cmd/missing:v0.1.0`, 404, 'MANIFEST_UNKNOWN', /has no package example\.com\/hello\/cmd\/missing/],
      ['example.com/broken:v0.1.0', 422, 'MANIFEST_UNKNOWN', /undefined: undefinedThing/],
      ['example.com/evil:v0.1.0', 422, 'MANIFEST_UNKNOWN', /example\.com\/evil@v0\.1\.0\/\.\.\/escape\.go/],
      ['fmt:latest', 400, 'NAME_INVALID', /import path/],
    ];
    for (const [ref, status, code, message] of cases) {
      const res = await manifestOf(ref);
      assert.equal(res.status, status, `${ref}: ${res.body.toString()}`);
      const error = registryError({ status: res.status, headers: {}, body: res.body });
      assert.equal(error.code, code, ref);
      assert.match(error.message, message, ref);
    }
  });

  test('without a Go toolchain the ko host says it needs one', async () => {
    const noGo = await startKontain({
      KONTAIN_GOPROXY: proxyURL(proxyDir),
      KONTAIN_KO_BASE: `${upstream.host}/base/static:v1`,
      KONTAIN_INSECURE_REGISTRIES: upstream.host,
      KONTAIN_KO_CACHE: GO_CACHE,
      KONTAIN_GO: '/nonexistent/go',
    });
    try {
      const res = await request(`${noGo.url}/v2/ko/${HELLO}/cmd/hello/manifests/v0.2.0`, { headers: ACCEPT });
      assert.equal(res.status, 503, res.body.toString());
      const error = registryError(res);
      assert.equal(error.code, 'UNAVAILABLE');
      assert.match(error.message, /ko host needs a Go toolchain/);
    } finally {
      await noGo.stop();
    }
  });

  // Last: it stops the base registry.
  test('a built image still pulls while the base registry is down', async () => {
    await upstream.stop();
    const res = await manifestOf(`${HELLO}/cmd/hello:v0.1.0`);
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.digest, indexDigest);
  });
});
