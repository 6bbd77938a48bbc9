/**
 * The nix host end to end: a Nix store and package set of the test's own (see
 * support/nix-fixtures.ts), Debian's nix-bin building, skopeo pulling, umoci unpacking.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { exec, skopeoCopy, umociUnpack } from './support/tools.js';
import { request, registryError } from './support/http.js';
import { OciLayout } from './support/oci-layout.js';
import { nixEnvironment, writeFlakeRepository, writeNixCounters, writePackageSet, writePackageSetRepository } from './support/nix-fixtures.js';
import type { ImageConfig, ImageManifest } from '../src/oci/types.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const MAX_LAYERS = 64;

let work: string;
let server: TestServer;
let packageSet: string;
let gitServer: TestServer;
let pkgsRepo: { repo: string; v1: string; main: string };
let nixCalls: () => Promise<number>;
let savedPath: string | undefined;

async function pull(ref: string, name: string, from: TestServer = server): Promise<{ rootfs: string; config: ImageConfig; manifest: ImageManifest }> {
  const dir = path.join(work, name);
  await skopeoCopy(`docker://${from.address}/${ref}`, `oci:${dir}:t`);
  const layout = new OciLayout(dir);
  const manifest = await layout.manifest('t');
  const config = JSON.parse((await layout.blob(manifest.config.digest)).toString('utf8')) as ImageConfig;
  const bundle = path.join(work, `${name}-bundle`);
  await umociUnpack(`${dir}:t`, bundle);
  return { rootfs: path.join(bundle, 'rootfs'), config, manifest };
}

async function manifestError(repository: string, tag = 'latest', from: TestServer = server) {
  const result = await request(`${from.url}/v2/${repository}/manifests/${tag}`, { headers: { Accept: OCI_MANIFEST } });
  return { status: result.status, ...registryError(result) };
}

/** Store path of a package of the test set, as nix-build gives it. */
async function storePathOf(attr: string): Promise<string> {
  const { stdout } = await exec('nix-build', ['--no-out-link', path.join(work, 'pkgs.nix'), '-A', attr]);
  return stdout.trim();
}

describe('nix host', { timeout: 600_000 }, () => {
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'kontain-nix-'));
    const env = await nixEnvironment(work);
    // The server runs in this process and spawns Nix with this environment.
    Object.assign(process.env, env);
    const packages = await writePackageSet(work);
    packageSet = `import ${packages}`;
    const flake = await writeFlakeRepository(work);
    pkgsRepo = await writePackageSetRepository(work);
    // Every Nix command the servers start goes through a counting wrapper.
    const counters = await writeNixCounters(work);
    nixCalls = counters.calls;
    savedPath = process.env.PATH;
    process.env.PATH = `${counters.bin}:${process.env.PATH}`;
    server = await startKontain({ KONTAIN_NIX_PACKAGES: `import ${packages}`, KONTAIN_NIX_FLAKE: flake, KONTAIN_NIX_MAX_LAYERS: String(MAX_LAYERS), KONTAIN_BUILD_HOLD: '600' });
    gitServer = await startKontain({ KONTAIN_NIX_PACKAGES: `git+file://${pkgsRepo.repo}`, KONTAIN_BUILD_HOLD: '600' });
  });
  after(async () => {
    await server?.stop();
    await gitServer?.stop();
    if (savedPath !== undefined) process.env.PATH = savedPath;
    await exec('chmod', ['-R', 'u+w', work]).catch(() => undefined);
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('packages: the closure as store paths, /bin links, PATH, layers shared with a second image', async () => {
    const hello = await pull('nix/world/hello', 'hello');
    const libc = await storePathOf('libc');
    const helloPath = await storePathOf('hello');
    const worldPath = await storePathOf('world');
    for (const storePath of [libc, helloPath, worldPath]) assert.ok((await stat(path.join(hello.rootfs, storePath))).isDirectory(), `${storePath} in the image`);
    assert.equal(await readFile(path.join(hello.rootfs, libc, 'libc.so'), 'utf8'), 'libc-bytes\n');
    assert.equal(await readlink(path.join(hello.rootfs, 'bin/hello')), `${helloPath}/bin/hello`);
    assert.equal(await readlink(path.join(hello.rootfs, 'bin/world')), `${worldPath}/bin/world`);
    assert.equal(await readFile(path.join(hello.rootfs, helloPath, 'bin/hello'), 'utf8'), '#!/bin/sh\necho hello\n');
    assert.ok(hello.config.config?.Env?.includes('PATH=/bin:/sbin'));
    assert.equal(hello.manifest.mediaType, OCI_MANIFEST);
    // Three store paths, one layer each, and the links layer.
    assert.equal(hello.manifest.layers.length, 4);
    assert.ok(hello.manifest.annotations?.['org.opencontainers.image.revision']);
    assert.equal(hello.manifest.annotations?.['me.kontain.nix.packages'], 'hello,world');

    // Names are sorted: the same set in another order is the same image.
    const again = await request(`${server.url}/v2/nix/hello/world/manifests/latest`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } });
    const first = await request(`${server.url}/v2/nix/world/hello/manifests/latest`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } });
    assert.equal(again.headers['docker-content-digest'], first.headers['docker-content-digest']);

    const tool = await pull('nix/hello/nested.tool', 'tool');
    assert.equal(await readlink(path.join(tool.rootfs, 'bin/tool')), `${await storePathOf('Nested.Tool')}/bin/tool`);
    const shared = tool.manifest.layers.map((l) => l.digest).filter((d) => hello.manifest.layers.some((h) => h.digest === d));
    // libc's and hello's layers are the same blobs in both images.
    assert.equal(shared.length, 2);
  });

  test('shell: bash as the command and SSL_CERT_FILE from the CA bundle', async () => {
    const shell = await pull('nix/shell', 'shell');
    assert.deepEqual(shell.config.config?.Cmd, ['bash']);
    const cacert = await storePathOf('cacert');
    assert.ok(shell.config.config?.Env?.includes(`SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt`));
    assert.equal(await readlink(path.join(shell.rootfs, 'bin/bash')), `${await storePathOf('bashInteractive')}/bin/bash`);
  });

  test('a closure of 150 store paths stays within the layer budget', async () => {
    const big = await pull('nix/big', 'big');
    const { stdout } = await exec('nix-store', ['-qR', await storePathOf('big')]);
    const closure = stdout.split('\n').filter(Boolean);
    assert.equal(closure.length, 150);
    assert.ok(big.manifest.layers.length <= MAX_LAYERS, `${big.manifest.layers.length} layers`);
    assert.equal(big.manifest.layers.length, MAX_LAYERS);
    for (const storePath of closure) assert.ok((await stat(path.join(big.rootfs, storePath))).isDirectory(), `${storePath} in the image`);
  });

  test('an unknown package is MANIFEST_UNKNOWN naming it', async () => {
    const result = await manifestError('nix/hello/nosuchpackage');
    assert.equal(result.status, 404);
    assert.equal(result.code, 'MANIFEST_UNKNOWN');
    assert.match(result.message, /nosuchpackage/);
    assert.doesNotMatch(result.message, /hello/);
  });

  test('a failing derivation answers 422 with its last lines', async () => {
    const result = await manifestError('nix/broken');
    assert.equal(result.status, 422);
    assert.equal(result.code, 'MANIFEST_UNKNOWN');
    assert.match(result.message, /widget\.c:12: error: expected semicolon/);
  });

  test('a build longer than the hold answers "building, pull again", then the image', async () => {
    const impatient = await startKontain({ KONTAIN_NIX_PACKAGES: packageSet, KONTAIN_BUILD_HOLD: '0' });
    try {
      const url = `${impatient.url}/v2/nix/slow/manifests/latest`;
      const first = await request(url, { headers: { Accept: OCI_MANIFEST } });
      assert.equal(first.status, 404);
      assert.match(registryError(first).message, /building nix slow/);
      let status = first.status;
      for (let i = 0; i < 240 && status !== 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        status = (await request(url, { headers: { Accept: OCI_MANIFEST } })).status;
      }
      assert.equal(status, 200);
    } finally {
      await impatient.stop();
    }
  });

  test('flake outputs by git ref, and an image tarball output served as that image', async () => {
    const main = await pull('nix/flake--greeting:main', 'flake-main');
    const v2 = await pull('nix/flake--greeting:v2', 'flake-v2');
    assert.notEqual(main.manifest.config.digest, v2.manifest.config.digest);
    const word = async (rootfs: string) => {
      const link = await readlink(path.join(rootfs, 'bin/greeting'));
      return readFile(path.join(rootfs, path.dirname(path.dirname(link)), 'word'), 'utf8');
    };
    assert.equal(await word(main.rootfs), 'hello-main\n');
    assert.equal(await word(v2.rootfs), 'hello-v2\n');
    const { stdout: mainRev } = await exec('git', ['-C', path.join(work, 'flake'), 'rev-parse', 'main']);
    assert.equal(main.manifest.annotations?.['org.opencontainers.image.revision'], mainRev.trim());

    const image = await pull('nix/flake--image:v2', 'flake-image');
    assert.equal(image.manifest.layers.length, 1);
    assert.equal(await readFile(path.join(image.rootfs, 'etc/greeting'), 'utf8'), 'hello-v2\n');
    assert.deepEqual(image.config.config?.Cmd, ['/bin/greet']);
    assert.ok(image.config.config?.Env?.includes('GREETING=hello-v2'));

    const missing = await manifestError('nix/flake--nosuchoutput', 'main');
    assert.equal(missing.status, 404);
    assert.equal(missing.code, 'MANIFEST_UNKNOWN');
  });

  test('flake outputs that are images: a streamLayeredImage script, and flakehub\'s layer configuration', async () => {
    const streamed = await pull('nix/flake--stream:v2', 'flake-stream');
    assert.equal(streamed.manifest.layers.length, 1);
    assert.equal(await readFile(path.join(streamed.rootfs, 'etc/greeting'), 'utf8'), 'hello-v2\n');
    assert.deepEqual(streamed.config.config?.Cmd, ['/bin/greet']);
    assert.ok(streamed.config.config?.Env?.includes('GREETING=hello-v2'));

    const layered = await pull('nix/flake--layers:main', 'flake-layers');
    // The configuration's one store layer, then its customisation layer.
    assert.equal(layered.manifest.layers.length, 2);
    const link = await readlink(path.join(layered.rootfs, 'bin/greeting'));
    const greeting = path.dirname(path.dirname(link));
    assert.equal(await readFile(path.join(layered.rootfs, greeting, 'word'), 'utf8'), 'hello-main\n');
    assert.deepEqual(layered.config.config?.Cmd, ['/bin/greeting']);
    assert.ok(layered.config.config?.Env?.includes('WORD=hello-main'));
    assert.equal(layered.config.created, '1970-01-01T00:00:01.000Z');
  });

  test('a git package set pinned by the tag: a tag, a commit, latest; the revision in the annotations', async () => {
    const v1 = await pull('nix/hello:v1', 'git-v1', gitServer);
    const latest = await pull('nix/hello:latest', 'git-latest', gitServer);
    const REVISION = 'org.opencontainers.image.revision';
    assert.equal(v1.manifest.annotations?.[REVISION], pkgsRepo.v1);
    assert.equal(latest.manifest.annotations?.[REVISION], pkgsRepo.main);
    const helloDir = async (rootfs: string) => path.join(rootfs, path.dirname(path.dirname(await readlink(path.join(rootfs, 'bin/hello')))));
    await assert.rejects(stat(path.join(await helloDir(v1.rootfs), 'version')));
    assert.equal(await readFile(path.join(await helloDir(latest.rootfs), 'version'), 'utf8'), '2\n');

    const byCommit = await request(`${gitServer.url}/v2/nix/hello/manifests/${pkgsRepo.v1}`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } });
    const byTag = await request(`${gitServer.url}/v2/nix/hello/manifests/v1`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } });
    assert.equal(byCommit.status, 200);
    assert.equal(byCommit.headers['docker-content-digest'], byTag.headers['docker-content-digest']);

    const unknown = await manifestError('nix/hello', 'nosuchbranch', gitServer);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.code, 'MANIFEST_UNKNOWN');
    assert.match(unknown.message, /no branch or tag nosuchbranch/);
  });

  test('a repeat pull of an image made before runs no Nix process', async () => {
    const manifestOf = async (from: TestServer, repository: string, tag: string) => {
      const result = await request(`${from.url}/v2/${repository}/manifests/${tag}`, { headers: { Accept: OCI_MANIFEST } });
      assert.equal(result.status, 200, `${repository}:${tag}`);
      return result.headers['docker-content-digest'];
    };
    const first = {
      git: await manifestOf(gitServer, 'nix/world/hello', 'latest'),
      flake: await manifestOf(server, 'nix/flake--greeting', 'v2'),
      expression: await manifestOf(server, 'nix/hello/world', 'latest'),
    };
    const before = await nixCalls();
    assert.ok(before > 0, 'the wrappers see Nix being run');
    assert.equal(await manifestOf(gitServer, 'nix/world/hello', 'latest'), first.git);
    assert.equal(await manifestOf(gitServer, 'nix/hello/world', 'latest'), first.git);
    assert.equal(await manifestOf(server, 'nix/flake--greeting', 'v2'), first.flake);
    assert.equal(await manifestOf(server, 'nix/world/hello', 'latest'), first.expression);
    assert.equal(await nixCalls(), before);
  });
});
