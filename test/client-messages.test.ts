/**
 * What a person pulling sees when kontain cannot make an image, read from skopeo's and
 * podman's own output (issue 13 item 7), and flatten/estargz serving a tag built before
 * while their upstream is down (stale-if-error).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { freePort, startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout } from './support/upstream-images.js';
import { signaturePolicy, skopeoCopy } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import { request } from './support/http.js';

let upstream: UpstreamRegistry;
let server: TestServer;
let work: string;
let upstreamPath: string;
/** The derived images of lib/app:v1, by host, as pulled while the upstream was up. */
const built = new Map<string, string>();

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-messages-'));
  upstream = await startUpstreamRegistry();
  upstreamPath = upstream.host.replace(':', '-');
  const layout = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'etc/hello': 'hello\n' }), await tarLayer({ 'bin/tool': 'tool\n' })] }]);
  await pushOciLayout(layout, `${upstream.host}/lib/app:v1`);
  // A module proxy that is not there: nothing listens on a port that was just free.
  const closed = await freePort();
  server = await startKontain({ KONTAIN_INSECURE_REGISTRIES: upstream.host, KONTAIN_GOPROXY: `http://127.0.0.1:${closed}` });
  for (const host of ['flatten', 'estargz']) {
    const dir = path.join(work, `${host}-up`);
    await skopeoCopy(`docker://${server.address}/${host}/${upstreamPath}/lib/app:v1`, `oci:${dir}:t`);
    built.set(host, await new OciLayout(dir).manifestDigest('t'));
  }
  await upstream.stop();
});
after(async () => {
  await server.stop();
  await upstream.stop();
  await rm(work, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stderr: string;
}

/** Runs a client that is expected to fail, keeping its exit code and what it printed. */
function run(file: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 120_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stderr });
    });
  });
}

const skopeo = (ref: string) => run('skopeo', ['inspect', '--policy', signaturePolicy(), '--tls-verify=false', `docker://${server.address}/${ref}`]);

/** podman as root on a throwaway vfs store; it retries a failed pull three times, then prints the error. */
const podman = async (ref: string): Promise<Run> => {
  const root = await mkdtemp(path.join(work, 'podman-'));
  // podman refuses a runroot path longer than 50 characters, which $TMPDIR may already be.
  const runroot = await mkdtemp(path.join(tmpdir().length <= 30 ? tmpdir() : '/tmp', 'kp-'));
  try {
    return await run('podman', [
      '--root', root, '--runroot', runroot, '--storage-driver', 'vfs', '--events-backend', 'none',
      'pull', '--signature-policy', signaturePolicy(), '--tls-verify=false', `${server.address}/${ref}`,
    ]);
  } finally {
    await rm(root, { recursive: true, force: true });
    await rm(runroot, { recursive: true, force: true });
  }
};

/** The failures a user can act on, and what each client must show of them. */
const FAILURES = [
  { what: 'flatten of a tag never built, upstream down', ref: () => `flatten/${upstreamPath}/lib/app:v2`, says: () => new RegExp(`upstream ${upstream.host.replace(/\./g, '\\.')}`) },
  { what: 'ko with its module proxy down', ref: () => 'ko/example.com/hello:v0.1.0', says: () => /module proxy http:\/\/127\.0\.0\.1:\d+ could not be reached/ },
];

for (const failure of FAILURES) {
  test(`${failure.what}: a 4xx whose message is in the body and the status line`, async () => {
    const res = await request(`${server.url}/v2/${failure.ref().replace(':', '/manifests/')}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.ok(res.status >= 400 && res.status < 500 && res.status !== 404, `status ${res.status}`);
    assert.match(res.body.toString(), failure.says());
    const head = await request(`${server.url}/v2/${failure.ref().replace(':', '/manifests/')}`, { method: 'HEAD' });
    assert.match(head.statusMessage ?? '', failure.says(), 'containerd resolves with HEAD and prints the status line');
  });

  test(`${failure.what}: skopeo prints the message`, async () => {
    const result = await skopeo(failure.ref());
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, failure.says(), result.stderr);
  });

  test(`${failure.what}: podman prints the message`, async () => {
    const result = await podman(failure.ref());
    assert.notEqual(result.code, 0);
    const last = result.stderr.trim().split('\n').at(-1) ?? '';
    assert.match(last, /^Error: /, result.stderr);
    assert.match(last, failure.says(), result.stderr);
  });
}

for (const host of ['flatten', 'estargz']) {
  test(`${host}: a tag built before is still pulled with its upstream stopped (stale-if-error)`, async () => {
    const dir = path.join(work, `${host}-down`);
    await skopeoCopy(`docker://${server.address}/${host}/${upstreamPath}/lib/app:v1`, `oci:${dir}:t`);
    assert.equal(await new OciLayout(dir).manifestDigest('t'), built.get(host));
  });
}
