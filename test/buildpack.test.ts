/**
 * The buildpack host end to end: repositories served by a loopback `git daemon`, a
 * builder image of the tests' own (shell buildpacks following the Buildpack API, and a
 * stand-in for the lifecycle's creator: test/support/buildpack-builder/) with its run
 * image in a loopback `docker-registry`, the build run by Debian's buildah in a working
 * container made from the builder, pulls by skopeo, unpacking by umoci.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { startGitServer, type GitServer } from './support/git-server.js';
import { pushTestBuilder, type TestBuilder } from './support/buildpack-builder.js';
import { registryError, request, type HttpResult } from './support/http.js';
import { exec, skopeoCopy, umociUnpack } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import type { ImageConfig, ImageManifest } from '../src/oci/types.js';

const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' };
let registry: UpstreamRegistry;
let git: GitServer;
let server: TestServer;
let work: string;
let builder: TestBuilder;
let firstCommit: string;

const APP = {
  'greeting.txt': 'hello from the app\n',
  'src/main.txt': 'the app itself\n',
  'svc/greeting.txt': 'hello from svc\n',
  'plain/readme.txt': 'nothing a buildpack knows\n',
  'broken/greeting.txt': 'x\n',
  'broken/fail-build': 'boom-marker-11: the greeter cannot build this\n',
};

const serverEnv = (extra: Record<string, string> = {}) => ({
  KONTAIN_GIT_BASE: git.base,
  KONTAIN_INSECURE_REGISTRIES: `${registry.host},${git.host}`,
  KONTAIN_BUILD_ALLOW: 'acme/*',
  KONTAIN_BUILDPACK_BUILDER: builder.builder,
  // Long enough for every build here: these tests are about results, not holding.
  KONTAIN_BUILD_HOLD: '120',
  ...extra,
});

before(async () => {
  registry = await startUpstreamRegistry();
  git = await startGitServer();
  work = await mkdtemp(path.join(tmpdir(), 'kontain-buildpack-test-'));
  builder = await pushTestBuilder(registry.host);
  firstCommit = await git.createRepository('acme', 'app', APP);
  await git.tag('acme', 'app', 'v1.0.0');
  server = await startKontain(serverEnv({ KONTAIN_BUILD_DIR: path.join(work, 'builds') }));
});

after(async () => {
  await server?.stop();
  await git?.stop();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const manifest = (base: string, repo: string, reference: string): Promise<HttpResult> =>
  request(`${base}/v2/buildpack/${repo}/manifests/${reference}`, { headers: ACCEPT });

async function digestOf(repo: string, reference: string): Promise<string> {
  const res = await manifest(server.url, repo, reference);
  assert.equal(res.status, 200, res.body.toString());
  return res.headers['docker-content-digest'] as string;
}

/** skopeo copy into an OCI layout, then umoci unpack: the image's files, manifest and config. */
async function pullAndUnpack(address: string, repo: string, reference: string): Promise<{ layoutDir: string; rootfs: string; config: ImageConfig; manifest: ImageManifest }> {
  const dir = await mkdtemp(path.join(work, 'pull-'));
  await skopeoCopy(`docker://${address}/buildpack/${repo}:${reference}`, `oci:${dir}/layout:x`);
  await umociUnpack(`${dir}/layout:x`, `${dir}/bundle`);
  const layout = new OciLayout(`${dir}/layout`);
  const manifest = await layout.manifest('x');
  const config = JSON.parse((await layout.blob(manifest.config.digest)).toString('utf8')) as ImageConfig;
  return { layoutDir: `${dir}/layout`, rootfs: `${dir}/bundle/rootfs`, config, manifest };
}

test('a branch is built by the builder: the app under /workspace, the launch layer, the io.buildpacks labels, an entrypoint that runs the declared process', async () => {
  const { rootfs, config, manifest: pulled, layoutDir } = await pullAndUnpack(server.address, 'acme/app', 'main');
  // The app, with what the buildpack wrote into it during the build.
  assert.equal(await readFile(path.join(rootfs, 'workspace/greeting.txt'), 'utf8'), 'hello from the app\n');
  assert.equal(await readFile(path.join(rootfs, 'workspace/src/main.txt'), 'utf8'), 'the app itself\n');
  assert.equal(await readFile(path.join(rootfs, 'workspace/built-by-buildpack.txt'), 'utf8'), 'built by the greeter buildpack\n');
  // The buildpack's launch layer, and the run image's files under it.
  assert.match(await readFile(path.join(rootfs, 'layers/kontain-test_greeter/greeter/bin/greet'), 'utf8'), /greeter says/);
  assert.ok((await readFile(path.join(rootfs, 'bin/busybox'))).length > 100_000);
  // The run image's layer comes first, as the builder's metadata named it.
  const runLayers = JSON.parse((await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${builder.runImage}`])).stdout) as ImageManifest;
  assert.equal(pulled.layers[0]!.digest, runLayers.layers[0]!.digest);
  assert.equal(pulled.layers.length, runLayers.layers.length + 4, 'launch layer, app, launcher, config');
  // The app layer was written by the builder's build user (CNB_USER_ID 1000), not root.
  const appLayer = path.join(layoutDir, 'blobs/sha256', pulled.layers[runLayers.layers.length + 1]!.digest.slice(7));
  const listing = (await exec('tar', ['--numeric-owner', '-tvzf', appLayer])).stdout;
  assert.match(listing, /^\S+ 1000\/1000 .* workspace\/built-by-buildpack\.txt$/m);
  // What the lifecycle exported: entrypoint, working directory, labels.
  assert.deepEqual(config.config?.Entrypoint, ['/cnb/process/web']);
  assert.equal(config.config?.WorkingDir, '/workspace');
  assert.equal(await readlink(path.join(rootfs, 'cnb/process/web')), '../lifecycle/launcher');
  const build = JSON.parse(config.config?.Labels?.['io.buildpacks.build.metadata'] ?? '{}') as { processes: Array<{ type: string; command: string[] }>; buildpacks: Array<{ id: string }> };
  assert.deepEqual(build.processes.map((p) => [p.type, p.command]), [['web', ['greet']]]);
  assert.deepEqual(build.buildpacks.map((b) => b.id), ['kontain-test/greeter']);
  const lifecycle = JSON.parse(config.config?.Labels?.['io.buildpacks.lifecycle.metadata'] ?? '{}') as { runImage: { reference: string } };
  assert.match(lifecycle.runImage.reference, /^127\.0\.0\.1:\d+\/test\/run@sha256:[0-9a-f]{64}$/);
  // The entrypoint runs the declared process: the launch layer's program, in /workspace.
  const run = await exec('chroot', [rootfs, '/bin/env', '-i', ...(config.config?.Env ?? []), ...(config.config?.Entrypoint ?? [])]);
  assert.equal(run.stdout, 'greeter says: hello from the app (in /workspace)\n');
});

test('a tag, the full commit and an abbreviated commit give the image the branch gives; a subdirectory is its own app', async () => {
  const byBranch = await digestOf('acme/app', 'main');
  assert.equal(await digestOf('acme/app', 'v1.0.0'), byBranch);
  assert.equal(await digestOf('acme/app', firstCommit.slice(0, 7)), byBranch);
  assert.equal(await digestOf('acme/app', firstCommit), byBranch);
  const { rootfs } = await pullAndUnpack(server.address, 'acme/app/svc', firstCommit);
  assert.equal(await readFile(path.join(rootfs, 'workspace/greeting.txt'), 'utf8'), 'hello from svc\n');
  await assert.rejects(readFile(path.join(rootfs, 'workspace/src/main.txt')));
});

test('a source no buildpack detects answers 422 "no buildpack group passed detection" with the log; a failing build with its last lines', async () => {
  const res = await manifest(server.url, 'acme/app/plain', 'main');
  assert.equal(res.status, 422, res.body.toString());
  const error = registryError(res);
  assert.equal(error.code, 'MANIFEST_UNKNOWN');
  assert.match(error.message, /build of acme\/app\/plain@[0-9a-f]{7} failed: no buildpack group passed detection/);
  assert.match(error.message, /ERROR: No buildpack groups passed detection\./);
  const logUrl = /log: (\S+)$/.exec(error.message)?.[1];
  assert.ok(logUrl, error.message);
  const log = (await request(logUrl)).body.toString();
  assert.match(log, /===> DETECTING/);
  assert.match(log, /skip: kontain-test\/greeter@0\.0\.1/);

  const broken = await manifest(server.url, 'acme/app/broken', 'main');
  assert.equal(broken.status, 422, broken.body.toString());
  const failed = registryError(broken).message;
  assert.match(failed, /a buildpack failed to build \(creator exit status 51\)/);
  assert.match(failed, /boom-marker-11/);
});

test('a repository outside KONTAIN_BUILD_ALLOW is DENIED, naming the variable', async () => {
  const res = await manifest(server.url, 'other/app', 'main');
  assert.equal(res.status, 403);
  assert.equal(registryError(res).code, 'DENIED');
  assert.match(registryError(res).message, /KONTAIN_BUILD_ALLOW/);
});

test('a new builder behind the same tag gives a new image of the same commit', async () => {
  const before = await digestOf('acme/app/svc', firstCommit);
  await pushTestBuilder(registry.host, '1', 'kontain test builder, second release');
  const after = await digestOf('acme/app/svc', firstCommit);
  assert.notEqual(after, before);
  const config = await pullAndUnpack(server.address, 'acme/app/svc', firstCommit);
  assert.equal(await readFile(path.join(config.rootfs, 'workspace/greeting.txt'), 'utf8'), 'hello from svc\n');
});

test('a builder image without builder metadata is a 503 naming KONTAIN_BUILDPACK_BUILDER', async () => {
  const odd = await startKontain(serverEnv({ KONTAIN_BUILDPACK_BUILDER: builder.runImage, KONTAIN_BUILD_DIR: path.join(work, 'builds-odd') }));
  try {
    const res = await manifest(odd.url, 'acme/app', 'main');
    assert.equal(res.status, 503, res.body.toString());
    assert.equal(registryError(res).code, 'UNAVAILABLE');
    assert.match(registryError(res).message, /KONTAIN_BUILDPACK_BUILDER.*no io\.buildpacks\.builder\.metadata label/);
  } finally {
    await odd.stop();
  }
});

test('the Cloud Build executor, through the real client and a local Cloud Build endpoint, builds the same app', async () => {
  const { startFakeGcs } = await import('./support/fake-gcs.js');
  const { startFakeCloudBuild } = await import('./support/fake-cloud-build.js');
  const gcs = await startFakeGcs();
  const cloudBuild = await startFakeCloudBuild(gcs);
  const cloud = await startKontain(
    serverEnv({
      KONTAIN_STORE: 'gs://kontain-test/registry',
      KONTAIN_GCS_ENDPOINT: gcs.endpoint,
      KONTAIN_BUILD_EXECUTOR: 'cloudbuild',
      KONTAIN_CLOUD_BUILD_PROJECT: 'test-project',
      KONTAIN_CLOUD_BUILD_ENDPOINT: cloudBuild.endpoint,
      KONTAIN_BUILD_DIR: path.join(work, 'builds-cloud'),
    }),
  );
  try {
    const { rootfs, config } = await pullAndUnpack(cloud.address, 'acme/app/svc', 'main');
    assert.equal(await readFile(path.join(rootfs, 'workspace/greeting.txt'), 'utf8'), 'hello from svc\n');
    assert.match(await readFile(path.join(rootfs, 'layers/kontain-test_greeter/greeter/bin/greet'), 'utf8'), /greeter says/);
    assert.deepEqual(config.config?.Entrypoint, ['/cnb/process/web']);
    // One build, from the context the executor put in the bucket, with the builder pinned by digest.
    assert.equal(cloudBuild.builds.length, 1);
    const sent = cloudBuild.builds[0]!.request as { source: { storageSource: { object: string } }; steps: Array<{ env: string[] }> };
    assert.match(sent.source.storageSource.object, /^registry\/builds\/cloud\/buildpack-[0-9a-f-]+\/source\.tar\.gz$/);
    assert.ok(sent.steps[0]!.env.some((e) => /^KONTAIN_BUILDER=127\.0\.0\.1:\d+\/test\/builder@sha256:[0-9a-f]{64}$/.test(e)), JSON.stringify(sent.steps[0]!.env));
    assert.equal(gcs.read('kontain-test', sent.source.storageSource.object), undefined, 'the build folder is removed');

    // Detection failing in Cloud Build: the creator's status comes back as the detection error, with the log.
    const res = await manifest(cloud.url, 'acme/app/plain', 'main');
    assert.equal(res.status, 422, res.body.toString());
    const message = registryError(res).message;
    assert.match(message, /no buildpack group passed detection/);
    assert.match(message, /ERROR: No buildpack groups passed detection\./);
  } finally {
    await cloud.stop();
    await cloudBuild.close();
    await gcs.close();
  }
});
