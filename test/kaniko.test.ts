/**
 * The kaniko host end to end with real parts: repositories served by a loopback
 * `git daemon`, a busybox-static base image in a loopback `docker-registry`, builds by
 * Debian's buildah, pulls by skopeo, unpacking by umoci.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { startGitServer, type GitServer } from './support/git-server.js';
import { pushBusyboxBase } from './support/busybox-image.js';
import { registryError, request, type HttpResult } from './support/http.js';
import { skopeoCopy, umociUnpack } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import { diskUsage } from './support/disk-usage.js';
import type { ImageConfig } from '../src/oci/types.js';

const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' };
let registry: UpstreamRegistry;
let git: GitServer;
let server: TestServer;
let work: string;
let base: string;
let firstCommit: string;

const DOCKERFILE = (from: string) => `# a comment
FROM ${from}
ENV GREETING=hello
WORKDIR /app
COPY files/ ./files/
RUN echo "built $GREETING" > /app/built.txt && \\
    ls /app/files > /app/listing.txt
ENTRYPOINT ["/bin/sh", "-c", "cat /app/built.txt"]
`;

before(async () => {
  registry = await startUpstreamRegistry();
  git = await startGitServer();
  work = await mkdtemp(path.join(tmpdir(), 'kontain-kaniko-test-'));
  await pushBusyboxBase(registry.host, 'base/busybox', '1');
  base = `${registry.host}/base/busybox:1`;
  firstCommit = await git.createRepository('acme', 'app', {
    Dockerfile: DOCKERFILE(base),
    'files/a.txt': 'file a\n',
    'files/b.txt': 'file b\n',
    'sub/Dockerfile': `FROM ${base}\nCOPY note.txt /note.txt\nRUN echo "from sub" > /sub.txt\n`,
    'sub/note.txt': 'a note\n',
    'broken/Dockerfile': `FROM ${base}\nRUN echo first-line-of-failure && echo boom-marker-7 && false\n`,
  });
  await git.tag('acme', 'app', 'v1.0.0');
  await git.createRepository('other', 'app', { Dockerfile: DOCKERFILE(base), 'files/a.txt': 'x\n' });
  server = await startKontain({
    KONTAIN_GIT_BASE: git.base,
    KONTAIN_INSECURE_REGISTRIES: `${registry.host},${git.host}`,
    KONTAIN_BUILD_ALLOW: 'acme/*',
    KONTAIN_BUILD_DIR: path.join(work, 'builds'),
    // Long enough for every build here: these tests are about results, not holding.
    KONTAIN_BUILD_HOLD: '120',
  });
});

after(async () => {
  await server?.stop();
  await git?.stop();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const manifest = (repo: string, reference: string): Promise<HttpResult> =>
  request(`${server.url}/v2/kaniko/${repo}/manifests/${reference}`, { headers: ACCEPT });

async function digestOf(repo: string, reference: string): Promise<string> {
  const res = await manifest(repo, reference);
  assert.equal(res.status, 200, res.body.toString());
  return res.headers['docker-content-digest'] as string;
}

/** skopeo copy into an OCI layout, then umoci unpack: the image's files and config. */
async function pullAndUnpack(repo: string, reference: string): Promise<{ rootfs: string; config: ImageConfig }> {
  const dir = await mkdtemp(path.join(work, 'pull-'));
  await skopeoCopy(`docker://${server.address}/kaniko/${repo}:${reference}`, `oci:${dir}/layout:x`);
  await umociUnpack(`${dir}/layout:x`, `${dir}/bundle`);
  const layout = new OciLayout(`${dir}/layout`);
  const config = JSON.parse((await layout.blob((await layout.manifest('x')).config.digest)).toString('utf8')) as ImageConfig;
  return { rootfs: `${dir}/bundle/rootfs`, config };
}

test('a branch is built from its Dockerfile: RUN output, copied files, entrypoint and env', async () => {
  const { rootfs, config } = await pullAndUnpack('acme/app', 'main');
  assert.equal(await readFile(path.join(rootfs, 'app/built.txt'), 'utf8'), 'built hello\n');
  assert.equal(await readFile(path.join(rootfs, 'app/listing.txt'), 'utf8'), 'a.txt\nb.txt\n');
  assert.equal(await readFile(path.join(rootfs, 'app/files/a.txt'), 'utf8'), 'file a\n');
  assert.equal(await readFile(path.join(rootfs, 'app/files/b.txt'), 'utf8'), 'file b\n');
  // The base image's files are there too.
  assert.ok((await readFile(path.join(rootfs, 'bin/busybox'))).length > 100_000);
  assert.deepEqual(config.config?.Entrypoint, ['/bin/sh', '-c', 'cat /app/built.txt']);
  assert.ok(config.config?.Env?.includes('GREETING=hello'), JSON.stringify(config.config?.Env));
  assert.equal(config.config?.WorkingDir, '/app');
});

test('a tag, the full commit and an abbreviated commit give the image the branch gives', async () => {
  const byBranch = await digestOf('acme/app', 'main');
  assert.equal(await digestOf('acme/app', 'v1.0.0'), byBranch);
  assert.equal(await digestOf('acme/app', firstCommit.slice(0, 7)), byBranch);
  assert.equal(await digestOf('acme/app', firstCommit), byBranch);
  assert.equal(await digestOf('acme/app', 'latest'), byBranch);
});

test('a subdirectory is built from its own Dockerfile with itself as the context', async () => {
  const { rootfs } = await pullAndUnpack('acme/app/sub', 'main');
  assert.equal(await readFile(path.join(rootfs, 'note.txt'), 'utf8'), 'a note\n');
  assert.equal(await readFile(path.join(rootfs, 'sub.txt'), 'utf8'), 'from sub\n');
  await assert.rejects(readFile(path.join(rootfs, 'app/built.txt')));
});

test('a new commit on the branch gives a new image; the old commit keeps its image', async () => {
  const before = await digestOf('acme/app', 'main');
  const second = await git.commit('acme', 'app', { 'files/a.txt': 'file a, second version\n' });
  const after = await digestOf('acme/app', 'main');
  assert.notEqual(after, before);
  assert.equal(await digestOf('acme/app', second.slice(0, 9)), after);
  assert.equal(await digestOf('acme/app', firstCommit), before);
  const { rootfs } = await pullAndUnpack('acme/app', 'main');
  assert.equal(await readFile(path.join(rootfs, 'app/files/a.txt'), 'utf8'), 'file a, second version\n');
});

test('a failing RUN answers with the error and the last lines of the log, and is remembered', async () => {
  const res = await manifest('acme/app/broken', 'main');
  assert.equal(res.status, 422, res.body.toString());
  const error = registryError(res);
  assert.equal(error.code, 'MANIFEST_UNKNOWN');
  assert.match(error.message, /build of acme\/app\/broken@[0-9a-f]{7} failed/);
  assert.match(error.message, /boom-marker-7/);
  const logUrl = /log: (\S+)$/.exec(error.message)?.[1];
  assert.ok(logUrl, error.message);
  const log = await request(logUrl);
  assert.equal(log.status, 200);
  assert.match(log.body.toString(), /STEP 2\/2: RUN echo first-line-of-failure/);
  assert.match(log.body.toString(), /boom-marker-7/);
  // Asked again: the same failure, from memory (the log still has one run of the step).
  const again = await manifest('acme/app/broken', 'main');
  assert.equal(again.status, 422);
  assert.equal(registryError(again).message, error.message);
  const logAgain = (await request(logUrl)).body.toString();
  assert.equal(logAgain.split('STEP 2/2').length - 1, 1);
});

test('a repository outside KONTAIN_BUILD_ALLOW is DENIED, naming the variable', async () => {
  const res = await manifest('other/app', 'main');
  assert.equal(res.status, 403);
  const error = registryError(res);
  assert.equal(error.code, 'DENIED');
  assert.match(error.message, /KONTAIN_BUILD_ALLOW/);
});

test('unknown branches, directories without a Dockerfile and missing repositories are MANIFEST_UNKNOWN', async () => {
  const branch = await manifest('acme/app', 'no-such-branch');
  assert.equal(branch.status, 404);
  assert.match(registryError(branch).message, /no branch or tag no-such-branch/);
  const dir = await manifest('acme/app/files', 'main');
  assert.equal(dir.status, 404);
  assert.match(registryError(dir).message, /has no Dockerfile in files/);
  const repo = await manifest('acme/missing', 'main');
  assert.equal(repo.status, 404);
  assert.equal(registryError(repo).code, 'MANIFEST_UNKNOWN');
});

/** A loopback HTTP endpoint a RUN step calls (builds have the host's network): counts calls, answers when released. */
async function startGate(): Promise<{ url: string; calls: () => number; release: () => void; close: () => Promise<void> }> {
  const { createServer } = await import('node:http');
  let calls = 0;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const gate = createServer((_req, res) => {
    calls++;
    void released.then(() => res.end('released\n'));
  });
  await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
  const { port } = gate.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/gate`,
    calls: () => calls,
    release,
    close: () => new Promise((resolve) => gate.close(() => resolve())),
  };
}

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a build slower than the hold answers 404 with Retry-After and goes on; pulls meanwhile start nothing; then the image', async () => {
  const gate = await startGate();
  await git.createRepository('acme', 'slow', {
    Dockerfile: `FROM ${base}\nRUN wget -q -O /gate.txt ${gate.url}\nRUN echo done > /done.txt\n`,
  });
  const slow = await startKontain({
    KONTAIN_GIT_BASE: git.base,
    KONTAIN_INSECURE_REGISTRIES: `${registry.host},${git.host}`,
    KONTAIN_BUILD_ALLOW: 'acme/slow',
    KONTAIN_BUILD_DIR: path.join(work, 'builds-slow'),
    KONTAIN_BUILD_HOLD: '0.5',
  });
  try {
    const url = `${slow.url}/v2/kaniko/acme/slow/manifests/main`;
    const first = await request(url, { headers: ACCEPT });
    assert.equal(first.status, 404, first.body.toString());
    const error = registryError(first);
    assert.equal(error.code, 'MANIFEST_UNKNOWN');
    assert.match(error.message, /^building acme\/slow@[0-9a-f]{7}( \(step \d\/3\))?, pull again/);
    assert.ok(Number(first.headers['retry-after']) >= 1);
    // The build reaches the RUN step that waits on the gate.
    await until('the RUN step to call the gate', () => gate.calls() === 1);
    const second = await request(url, { headers: ACCEPT });
    assert.equal(second.status, 404);
    assert.match(registryError(second).message, /^building acme\/slow@[0-9a-f]{7} \(step 2\/3\), pull again in a few seconds; log: http:\/\/\S+\/_builds\/[0-9a-f]{32}\/log$/);
    // The log is readable while the build runs.
    const logUrl = /log: (\S+)$/.exec(registryError(second).message)![1]!;
    assert.match((await request(logUrl)).body.toString(), /STEP 2\/3: RUN wget/);
    gate.release();
    let res = second;
    await until('the image', async () => {
      res = await request(url, { headers: ACCEPT });
      return res.status !== 404;
    });
    assert.equal(res.status, 200, res.body.toString());
    // One build ran: its RUN step called the gate once.
    assert.equal(gate.calls(), 1);
  } finally {
    gate.release();
    await slow.stop();
    await gate.close();
  }
});

test('the Cloud Build executor, through the real clients and local Cloud Build, Cloud Tasks and GCS endpoints, gives the image buildah gives; each look at the build is a task of its own', async () => {
  const { startFakeGcs } = await import('./support/fake-gcs.js');
  const { startFakeCloudBuild } = await import('./support/fake-cloud-build.js');
  const { startFakeCloudTasks } = await import('./support/fake-cloud-tasks.js');
  const { freePort } = await import('./support/upstream-registry.js');
  const gcs = await startFakeGcs();
  const cloudBuild = await startFakeCloudBuild(gcs);
  const tasks = await startFakeCloudTasks({ privateKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, kid: 'unused', backoffMs: 100 });
  const port = await freePort();
  const cloud = await startKontain({
    PORT: String(port),
    KONTAIN_TASKS: 'projects/test-project/locations/us-central1/queues/kontain',
    KONTAIN_TASKS_SERVICE_URL: `http://127.0.0.1:${port}`,
    KONTAIN_CLOUD_TASKS_ENDPOINT: tasks.endpoint,
    KONTAIN_TASKS_SECRET: 'a-shared-secret-of-some-length',
    KONTAIN_STORE: 'gs://kontain-test/registry',
    KONTAIN_GCS_ENDPOINT: gcs.endpoint,
    KONTAIN_BUILD_EXECUTOR: 'cloudbuild',
    KONTAIN_CLOUD_BUILD_PROJECT: 'test-project',
    KONTAIN_CLOUD_BUILD_ENDPOINT: cloudBuild.endpoint,
    KONTAIN_GIT_BASE: git.base,
    KONTAIN_INSECURE_REGISTRIES: `${registry.host},${git.host}`,
    KONTAIN_BUILD_ALLOW: 'acme/app',
    KONTAIN_BUILD_DIR: path.join(work, 'builds-cloud'),
    KONTAIN_BUILD_HOLD: '120',
  });
  try {
    const commit = firstCommit;
    const dir = await mkdtemp(path.join(work, 'cloud-pull-'));
    await skopeoCopy(`docker://${cloud.address}/kaniko/acme/app/sub:${commit}`, `oci:${dir}/layout:x`);
    await umociUnpack(`${dir}/layout:x`, `${dir}/bundle`);
    assert.equal(await readFile(path.join(dir, 'bundle/rootfs/sub.txt'), 'utf8'), 'from sub\n');
    assert.equal(await readFile(path.join(dir, 'bundle/rootfs/note.txt'), 'utf8'), 'a note\n');
    // Built the same way as buildah here, from the same commit time: the same image.
    const local = await digestOf('acme/app/sub', commit);
    const res = await request(`${cloud.url}/v2/kaniko/acme/app/sub/manifests/${commit}`, { headers: ACCEPT });
    assert.equal(res.headers['docker-content-digest'], local);
    // One build, from the source the executor put in the bucket, pinned to the base's digest.
    assert.equal(cloudBuild.builds.length, 1);
    const sent = cloudBuild.builds[0]!.request as { source: { storageSource: { bucket: string; object: string } }; steps: Array<{ env: string[] }> };
    assert.equal(sent.source.storageSource.bucket, 'kontain-test');
    assert.match(sent.source.storageSource.object, /^registry\/builds\/cloud\/kaniko-[0-9a-f-]+\/source\.tar\.gz$/);
    assert.ok(sent.steps[0]!.env.some((e) => /^KONTAIN_DOCKERFILE=FROM 127\.0\.0\.1:\d+\/base\/busybox@sha256:[0-9a-f]{64}\n/.test(e)), JSON.stringify(sent.steps[0]!.env));
    // The build's folder in the bucket is gone afterwards.
    assert.equal(gcs.read('kontain-test', sent.source.storageSource.object), undefined);
    // On Cloud Run no CPU is given after a response: the first build task submitted the
    // build, and every look at it (GET of the build) was a later task of its own,
    // re-queued through Cloud Tasks, not a loop on the instance.
    const buildTasks = tasks.deliveries.filter((d) => d.url.endsWith('/_tasks/build') && d.status === 204);
    const looks = cloudBuild.requests.filter((r) => r.method === 'GET' && /\/builds\/[^/]+$/.test(r.path));
    assert.ok(looks.length >= 1);
    assert.equal(buildTasks.length, looks.length + 1, `${buildTasks.length} build tasks for ${looks.length} looks at the build`);

    // A failing step: its log comes back through the bucket into the answer.
    const failed = await request(`${cloud.url}/v2/kaniko/acme/app/broken/manifests/main`, { headers: ACCEPT });
    assert.equal(failed.status, 422, failed.body.toString());
    const error = registryError(failed);
    assert.match(error.message, /Cloud Build [0-9a-f-]+ ended FAILURE/);
    assert.match(error.message, /boom-marker-7/);
  } finally {
    await cloud.stop();
    await cloudBuild.close();
    await tasks.close();
    await gcs.close();
  }
});

test('a repository larger than KONTAIN_BUILD_MAX_SOURCE_BYTES is refused, naming the variable, and builds nothing', async () => {
  // About 4 MB of base64 noise: git cannot compress it below the 1 MiB limit.
  await git.createRepository('acme', 'huge', { Dockerfile: DOCKERFILE(base), 'files/noise.txt': randomBytes(3_000_000).toString('base64') });
  const small = await startKontain({
    KONTAIN_GIT_BASE: git.base,
    KONTAIN_INSECURE_REGISTRIES: `${registry.host},${git.host}`,
    KONTAIN_BUILD_ALLOW: 'acme/*',
    KONTAIN_BUILD_DIR: path.join(work, 'builds-small'),
    KONTAIN_BUILD_HOLD: '120',
    KONTAIN_BUILD_MAX_SOURCE_BYTES: String(1024 * 1024),
  });
  try {
    const res = await request(`${small.url}/v2/kaniko/acme/huge/manifests/main`, { headers: ACCEPT });
    assert.equal(res.status, 403, res.body.toString());
    const error = registryError(res);
    assert.equal(error.code, 'DENIED');
    assert.match(error.message, /KONTAIN_BUILD_MAX_SOURCE_BYTES/);
    // The build directory holds no fetched source afterwards.
    assert.ok((await diskUsage(path.join(work, 'builds-small'))) < 1024 * 1024, 'the refused source was removed');
  } finally {
    await small.stop();
  }
});

/** Processes whose command line holds `marker`, from /proc (the build's RUN steps among them). */
async function processesWith(marker: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(marker)) found.push(`${pid}: ${cmdline.replace(/\0/g, ' ')}`);
  }
  return found;
}

test('a build over KONTAIN_BUILD_TIMEOUT is stopped with its RUN processes and answered naming the limit; one over KONTAIN_BUILD_MAX_OUTPUT_BYTES is refused and its output not kept', async () => {
  const marker = `kontain-slow-${randomBytes(4).toString('hex')}`;
  await git.createRepository('acme', 'bounds', {
    // The RUN step's own children (a shell and its sleep) must go with the build.
    'slow/Dockerfile': `FROM ${base}\nRUN sh -c 'sleep 600; echo ${marker}' & sh -c 'sleep 601; echo ${marker}'\n`,
    // 8 MiB of random bytes: gzip cannot bring the layer under the 4 MiB limit.
    'big/Dockerfile': `FROM ${base}\nRUN head -c 8388608 /dev/urandom > /noise.bin\n`,
  });
  const bounded = await startKontain({
    KONTAIN_GIT_BASE: git.base,
    KONTAIN_INSECURE_REGISTRIES: `${registry.host},${git.host}`,
    KONTAIN_BUILD_ALLOW: 'acme/*',
    KONTAIN_BUILD_DIR: path.join(work, 'builds-bounded'),
    KONTAIN_BUILD_HOLD: '120',
    KONTAIN_BUILD_TIMEOUT: '10',
    KONTAIN_BUILD_MAX_OUTPUT_BYTES: String(4 * 1024 * 1024),
  });
  try {
    const slow = await request(`${bounded.url}/v2/kaniko/acme/bounds/slow/manifests/main`, { headers: ACCEPT });
    assert.equal(slow.status, 422, slow.body.toString());
    const timedOut = registryError(slow);
    assert.equal(timedOut.code, 'MANIFEST_UNKNOWN');
    assert.match(timedOut.message, /took longer than 10 s and was stopped \(KONTAIN_BUILD_TIMEOUT\)/);
    assert.deepEqual(await processesWith(marker), [], 'no process of the stopped build is left');

    const big = await request(`${bounded.url}/v2/kaniko/acme/bounds/big/manifests/main`, { headers: ACCEPT });
    assert.equal(big.status, 422, big.body.toString());
    const refused = registryError(big);
    assert.match(refused.message, /larger than the limit of 4194304 bytes \(KONTAIN_BUILD_MAX_OUTPUT_BYTES\)/);
    // Nothing of the build is left in its working space, and the store took no blob that large.
    assert.ok((await diskUsage(path.join(work, 'builds-bounded'))) < 1024 * 1024, 'the build directory was emptied');
    const blobs = await bounded.store.backend.list('blobs/sha256/');
    for await (const { info } of blobs) assert.ok(info.size < 4 * 1024 * 1024, `a ${info.size}-byte blob was stored`);
  } finally {
    await bounded.stop();
  }
});

/**
 * A git server that never finishes its ref listing: on git:// (raw TCP) and on HTTP, a
 * repository named `silent` gets nothing, any other the start of a pkt-line and then a
 * byte every 300 ms, forever.
 */
async function startStallingGitServer(protocol: 'git' | 'http'): Promise<{ host: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.once('data', (request) => {
      if (request.toString('latin1').includes('silent')) return;
      if (protocol === 'http') socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\r\n');
      // A pkt-line that announces 251 bytes and never ends.
      socket.write('00ff');
      const trickle = setInterval(() => socket.write('a'), 300);
      socket.on('close', () => clearInterval(trickle));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('a git server that trickles or never answers its ref listing is an error naming it within KONTAIN_GIT_TIMEOUT, not a hung pull', { timeout: 120_000 }, async () => {
  for (const protocol of ['git', 'http'] as const) {
    const stalling = await startStallingGitServer(protocol);
    const host = await startKontain({
      KONTAIN_GIT_BASE: `${protocol}://${stalling.host}`,
      KONTAIN_INSECURE_REGISTRIES: `${registry.host},${stalling.host}`,
      KONTAIN_BUILD_ALLOW: 'acme/*',
      KONTAIN_BUILD_DIR: path.join(work, `builds-stall-${protocol}`),
      KONTAIN_GIT_TIMEOUT: '2',
    });
    try {
      for (const repo of ['trickle', 'silent']) {
        const res = await request(`${host.url}/v2/kaniko/acme/${repo}/manifests/main`, { headers: ACCEPT });
        assert.equal(res.status, 424, `${protocol} ${repo}: ${res.body.toString()}`);
        const error = registryError(res);
        assert.equal(error.code, 'UNAVAILABLE');
        assert.ok(error.message.includes(`${protocol}://${stalling.host}/acme/${repo}`), error.message);
        assert.match(error.message, /did not send its ref listing within 2 s \(KONTAIN_GIT_TIMEOUT\)/);
      }
      // The server still answers everyone else.
      assert.equal((await request(`${host.url}/v2/`)).status, 200);
    } finally {
      await host.stop();
      await stalling.close();
    }
  }
});
