/**
 * `kontain proxy REF`: HTTP/1.1 on one keep-alive connection handed over as an fd (or as
 * stdin/stdout), driven by a Python http.client on a socketpair. Images come from a
 * loopback docker-registry.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import type { WrittenLayout } from './support/upstream-images.js';
import { isolatedSkopeoFiles, kontainCommand, pushProxyTestImages, runClient } from './support/image-proxy.js';

interface StepResult {
  step: string;
  status?: number;
  reason?: string;
  headers?: Record<string, string>;
  body?: string | null;
  sha256?: string;
  length?: number;
  failure?: string;
  message?: string;
}

interface Run {
  results: StepResult[];
  exit: number | string;
  stderr: string;
}

let upstream: UpstreamRegistry;
let files: { authfile: string; policy: string };
let store: string;
let single: WrittenLayout;
let index: WrittenLayout;
let corruptLayer: string;

const body = (r: StepResult) => Buffer.from(r.body ?? '', 'base64');
const ref = (name: string) => `docker://${upstream.host}/lib/${name}:v1`;

function proxy(reference: string, steps: string[], options: { platform?: string; stdio?: boolean } = {}): Promise<Run> {
  const command = kontainCommand('proxy', '--authfile', files.authfile, '--tls-verify=false', ...(options.platform ? ['--platform', options.platform] : []), reference);
  return runClient<Run>('http-scenario', command, steps, { KONTAIN_STORE: store, KONTAIN_LOG_LEVEL: 'warn', ...(options.stdio ? { PROXY_STDIO: '1' } : {}) });
}

before(async () => {
  upstream = await startUpstreamRegistry();
  files = await isolatedSkopeoFiles();
  store = await mkdtemp(path.join(tmpdir(), 'kontain-proxy-http-'));
  // The corrupt layer is incompressible, so the blob is several chunks and the answer has begun when the digest fails.
  ({ single, index, corruptLayer } = await pushProxyTestImages(upstream, files, {
    singleLayers: [{ 'etc/a': 'a\n' }, { 'bin/big': randomBytes(600_000) }],
    corruptLayer: { noise: randomBytes(3_000_000) },
    flipFromEnd: 100,
  }));
});

after(async () => {
  await upstream?.stop();
  if (store) await rm(store, { recursive: true, force: true });
});

test('manifest, config and blobs on one connection, then quit', async () => {
  const image = single.images[0]!;
  const run = await proxy(ref('single'), ['GET /manifest', 'GET /config', ...image.layers.map((l) => `GET /blobs/${l.digest}`), 'POST /quit']);
  const [manifest, config, ...rest] = run.results;
  assert.equal(manifest!.status, 200);
  assert.equal(manifest!.headers!['manifest-digest'], image.manifest.digest);
  assert.equal(manifest!.headers!['content-type'], 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(Number(manifest!.headers!['content-length']), image.manifestBytes.length);
  assert.deepEqual(body(manifest!), image.manifestBytes);
  assert.equal(config!.status, 200);
  assert.equal(config!.sha256, image.config.digest);
  for (const [i, layer] of image.layers.entries()) {
    assert.equal(rest[i]!.status, 200);
    assert.equal(rest[i]!.sha256, layer.digest);
    assert.equal(Number(rest[i]!.headers!['content-length']), layer.size);
  }
  assert.equal(rest.at(-1)!.status, 200, 'quit is answered');
  assert.equal(run.exit, 0, 'and the proxy exits 0');
});

test('an index resolves to this machine or to --platform', async () => {
  const own = await proxy(ref('index'), ['GET /manifest', 'GET /config', 'POST /quit']);
  if (process.arch === 'x64') assert.equal(own.results[0]!.headers!['manifest-digest'], index.images[0]!.manifest.digest);
  const arm = await proxy(ref('index'), ['GET /manifest', 'GET /config', `GET /blobs/${index.images[1]!.layers[0]!.digest}`, 'POST /quit'], { platform: 'linux/arm64/v8' });
  assert.equal(arm.results[0]!.headers!['manifest-digest'], index.images[1]!.manifest.digest);
  assert.deepEqual(body(arm.results[0]!), index.images[1]!.manifestBytes);
  assert.equal(arm.results[1]!.sha256, index.images[1]!.config.digest, 'the config of the chosen image, not an empty one');
  assert.equal(arm.results[2]!.sha256, index.images[1]!.layers[0]!.digest);
  const none = await proxy(ref('index'), ['GET /manifest', 'POST /quit'], { platform: 'linux/s390x' });
  assert.equal(none.results[0]!.status, 502);
  assert.match(JSON.parse(body(none.results[0]!).toString()).message, /no image found in image index for architecture "s390x"/);
});

test('a Docker image is served as OCI whose config digest matches /config and /blobs', async () => {
  const run = await proxy(ref('docker'), ['GET /manifest', 'GET /config', 'POST /quit']);
  const manifest = JSON.parse(body(run.results[0]!).toString()) as { mediaType: string; config: { digest: string; size: number }; layers: Array<{ mediaType: string }> };
  assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(manifest.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  assert.equal(run.results[1]!.sha256, manifest.config.digest);
  const again = await proxy(ref('docker'), ['GET /manifest', `GET /blobs/${manifest.config.digest}`, 'POST /quit']);
  assert.equal(again.results[1]!.status, 200);
  assert.equal(again.results[1]!.sha256, manifest.config.digest);
});

test('a blob corrupted upstream never arrives as a complete answer', async () => {
  const run = await proxy(ref('corrupt'), ['GET /manifest', `GET /blobs/${corruptLayer}`, 'GET /manifest']);
  assert.equal(run.results[0]!.status, 200);
  const blob = run.results[1]!;
  assert.ok(blob.failure, `the blob answer is cut off, not completed (got ${JSON.stringify({ status: blob.status, sha256: blob.sha256 })})`);
  assert.match(blob.failure!, /IncompleteRead|RemoteDisconnected|ConnectionReset/);
  assert.equal(run.results.length, 2, 'the connection is closed after it');
  assert.notEqual(run.exit, 0);
  assert.match(run.stderr, /digest mismatch/);
});

test('an unknown image, blob or endpoint is a JSON error with Content-Length, and the connection goes on', async () => {
  const missing = await proxy(`docker://${upstream.host}/lib/single:nope`, ['GET /manifest', 'GET /config', 'POST /quit']);
  for (const result of missing.results.slice(0, 2)) {
    assert.equal(result.status, 404);
    assert.equal(result.reason, 'Not Found');
    assert.equal(Number(result.headers!['content-length']), result.length);
    const error = JSON.parse(body(result).toString()) as { code: string; message: string };
    assert.equal(error.code, 'MANIFEST_UNKNOWN');
    assert.match(error.message, /nope/);
  }
  assert.equal(missing.results[2]!.status, 200);
  assert.equal(missing.exit, 0);

  const unknownBlob = 'sha256:' + '1'.repeat(64);
  const run = await proxy(ref('single'), [`GET /blobs/${unknownBlob}`, 'GET /blobs/md5:abc', 'GET /nowhere', 'POST /manifest', 'POST /quit'], { stdio: true });
  const [blob, badDigest, nowhere, wrongMethod, quit] = run.results;
  assert.equal(blob!.status, 404);
  assert.equal(JSON.parse(body(blob!).toString()).code, 'BLOB_UNKNOWN');
  assert.equal(badDigest!.status, 400);
  assert.equal(JSON.parse(body(badDigest!).toString()).code, 'DIGEST_INVALID');
  assert.equal(nowhere!.status, 404);
  assert.equal(wrongMethod!.status, 405);
  assert.equal(wrongMethod!.headers!['allow'], 'GET');
  assert.equal(quit!.status, 200, 'over stdin/stdout as well');
  assert.equal(run.exit, 0);
});

test('over stdin/stdout, answers still being made when stdin ends are finished, then the proxy exits 0', async () => {
  const image = single.images[0]!;
  const command = kontainCommand('proxy', '--authfile', files.authfile, '--tls-verify=false', ref('single'));
  // Every request is written and stdin closed before the first answer: the image is not
  // even opened yet when the proxy reads the end of its input.
  const steps = ['GET /manifest', ...image.layers.map((l) => `GET /blobs/${l.digest}`), 'GET /config'];
  const run = await runClient<Run & { trailing: number }>('http-eof', command, steps, { KONTAIN_STORE: store, KONTAIN_LOG_LEVEL: 'warn' });
  assert.equal(run.results.length, steps.length, `every request is answered (stderr: ${run.stderr})`);
  assert.equal(run.results[0]!.status, 200);
  assert.equal(run.results[0]!.headers!['manifest-digest'], image.manifest.digest);
  for (const [i, layer] of image.layers.entries()) {
    assert.equal(run.results[i + 1]!.status, 200);
    assert.equal(run.results[i + 1]!.sha256, layer.digest);
  }
  assert.equal(run.results.at(-1)!.sha256, image.config.digest);
  assert.equal(run.trailing, 0, 'nothing follows the last answer');
  assert.equal(run.exit, 0);
});
