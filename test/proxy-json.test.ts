/**
 * `kontain experimental-image-proxy` against Debian's `skopeo experimental-image-proxy`
 * (the reference), driven by the same Python client, for the same images in a loopback
 * docker-registry: an OCI image, an index, a Docker-typed image and one with a corrupted
 * layer. Manifests, configs, blob bytes and outcomes must agree; so must the failures.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startUpstreamRegistry, type UpstreamRegistry } from './support/upstream-registry.js';
import type { WrittenLayout } from './support/upstream-images.js';
import { isolatedSkopeoFiles, kontainCommand, pushProxyTestImages, runClient } from './support/image-proxy.js';
import { exec } from './support/tools.js';

interface Outcome {
  success: boolean;
  error_code?: string;
  error: string;
}

interface ImageResult {
  ref: string;
  open: Outcome;
  manifest?: { reply: Outcome; digest: string; bytes: string; finish: Outcome };
  GetConfig?: { reply: Outcome; bytes: string | null };
  GetFullConfig?: { reply: Outcome; bytes: string | null };
  GetLayerInfo?: Array<{ digest: string; size: number; media_type: string }>;
  GetLayerInfoPiped?: Array<{ digest: string; size: number; media_type: string }>;
  GetRawBlob?: { value: number; sha256: string; errors: string };
  blobs?: Array<{ digest: string; value: number; reply: Outcome; sha256: string | null; length: number | null; finish: Outcome | null }>;
  close?: Outcome;
}

interface Scenario {
  version: string;
  images: ImageResult[];
  exit: number;
}

let upstream: UpstreamRegistry;
let files: { authfile: string; policy: string };
let store: string;
let oci: WrittenLayout;
let index: WrittenLayout;
let corruptLayer: string;
const refs: string[] = [];

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');

function skopeo(): string[] {
  return ['skopeo', '--policy', files.policy, 'experimental-image-proxy', '--authfile', files.authfile, '--tls-verify=false'];
}

function kontain(): string[] {
  return kontainCommand('experimental-image-proxy', '--authfile', files.authfile, '--tls-verify=false');
}

const env = () => ({ KONTAIN_STORE: store, KONTAIN_LOG_LEVEL: 'warn' });

before(async () => {
  upstream = await startUpstreamRegistry();
  files = await isolatedSkopeoFiles();
  store = await mkdtemp(path.join(tmpdir(), 'kontain-proxy-store-'));
  ({ single: oci, index, corruptLayer } = await pushProxyTestImages(upstream, files, {
    singleLayers: [{ 'etc/hello': 'hello\n' }, { 'bin/tool': 'x'.repeat(300_000) }],
    corruptLayer: { victim: 'v'.repeat(50_000) },
    flipFromEnd: 30,
  }));
  refs.push(...['single', 'index', 'docker', 'corrupt'].map((name) => `docker://${upstream.host}/lib/${name}:v1`));
});

after(async () => {
  await upstream?.stop();
  if (store) await rm(store, { recursive: true, force: true });
});

/** The reference's outcome, compared as far as it says: skopeo 1.9 has no error_code yet. */
function sameOutcome(ours: Outcome | null | undefined, theirs: Outcome | null | undefined, what: string): void {
  assert.equal(ours?.success, theirs?.success, `${what}: success (kontain: ${ours?.error}; skopeo: ${theirs?.error})`);
  if (theirs?.error_code !== undefined && theirs.error_code !== null) assert.equal(ours?.error_code, theirs.error_code, `${what}: error_code`);
  if (ours && !ours.success) assert.ok(ours.error.length > 0 && ['other', 'retryable', 'EPIPE'].includes(ours.error_code ?? ''), `${what}: kontain says why, with a code`);
}

test('the JSON protocol gives what skopeo gives for a single image, an index, a Docker image and a corrupted layer', async () => {
  const [theirs, ours] = [await runClient<Scenario>('json-scenario', skopeo(), refs), await runClient<Scenario>('json-scenario', kontain(), refs, env())];
  assert.equal(ours.version, '0.2.8');
  assert.equal(theirs.exit, 0);
  assert.equal(ours.exit, 0, 'Shutdown ends kontain with status 0');
  for (const [i, mine] of ours.images.entries()) {
    const ref = theirs.images[i]!;
    const what = mine.ref;
    sameOutcome(mine.open, ref.open, `${what} OpenImage`);
    assert.equal(mine.manifest?.digest, ref.manifest?.digest, `${what}: manifest digest`);
    assert.equal(mine.manifest?.bytes, ref.manifest?.bytes, `${what}: manifest bytes (OCI, converted the same way)`);
    for (const method of ['GetConfig', 'GetFullConfig'] as const) {
      sameOutcome(mine[method]?.reply, ref[method]?.reply, `${what} ${method}`);
      assert.equal(mine[method]?.bytes, ref[method]?.bytes, `${what}: ${method} bytes`);
    }
    assert.equal(mine.blobs?.length, ref.blobs?.length);
    for (const [j, blob] of (mine.blobs ?? []).entries()) {
      const other = ref.blobs![j]!;
      sameOutcome(blob.reply, other.reply, `${what} GetBlob ${blob.digest}`);
      assert.equal(blob.value, other.value, `${what}: GetBlob size`);
      sameOutcome(blob.finish, other.finish, `${what} FinishPipe of ${blob.digest}`);
      if (other.finish?.success) assert.equal(blob.sha256, other.sha256, `${what}: blob bytes`);
    }
    sameOutcome(mine.close, ref.close, `${what} CloseImage`);
    // Newer than Debian's skopeo: checked against the manifest instead.
    const manifest = JSON.parse(Buffer.from(mine.manifest!.bytes, 'base64').toString()) as { layers: Array<{ digest: string; size: number }> };
    assert.deepEqual(mine.GetLayerInfo?.map((l) => [l.digest, l.size]), manifest.layers.map((l) => [l.digest, l.size]));
    assert.deepEqual(mine.GetLayerInfoPiped, mine.GetLayerInfo);
  }
  const [single, idx, docker, corrupt] = ours.images;
  // The index resolved to this machine's image (amd64 in CI).
  if (process.arch === 'x64') assert.equal(idx!.manifest!.digest, index.images[0]!.manifest.digest);
  assert.equal(Buffer.from(single!.manifest!.bytes, 'base64').toString(), oci.images[0]!.manifestBytes.toString(), 'an OCI manifest is passed as is');
  assert.match(docker!.GetLayerInfo![0]!.media_type, /^application\/vnd\.docker\.image\.rootfs/, 'layer info keeps the source types');
  assert.equal(single!.GetRawBlob?.sha256, single!.blobs![0]!.digest);
  assert.equal(single!.GetRawBlob?.errors, '');
  const bad = corrupt!.blobs!.find((b) => b.digest === corruptLayer)!;
  assert.equal(bad.finish?.success, false, 'a corrupted layer fails at FinishPipe');
  assert.match(bad.finish!.error, /digest|corrupt/i);
  assert.match(JSON.parse(corrupt!.GetRawBlob!.errors).message, /digest/, 'GetRawBlob reports it on the error pipe');
});

test('requests that fail, fail as with skopeo', async () => {
  const ref = refs[0]!;
  const missing = `docker://${upstream.host}/lib/single:nope`;
  interface Errors {
    version: string;
    calls: Record<string, Outcome | Outcome[] | { reply: Outcome; finish?: Outcome | null; value?: number }>;
    exit: number;
  }
  const [theirs, ours] = [await runClient<Errors>('json-errors', skopeo(), [ref, missing]), await runClient<Errors>('json-errors', kontain(), [ref, missing], env())];
  for (const [name, reference] of Object.entries(theirs.calls)) {
    const mine = ours.calls[name];
    if (Array.isArray(reference)) reference.forEach((r, i) => sameOutcome((mine as Outcome[])[i], r, name));
    else if ('reply' in reference) {
      sameOutcome((mine as { reply: Outcome }).reply, reference.reply, name);
      sameOutcome((mine as { finish?: Outcome | null }).finish, reference.finish, `${name} FinishPipe`);
    } else sameOutcome(mine as Outcome, reference, name);
  }
  assert.deepEqual((ours.calls['optional-missing'] as { value: number }).value, 0, 'OpenImageOptional answers 0 for an image that does not exist');
  assert.match((ours.calls['unknown-method'] as Outcome).error, /unknown method: NoSuchMethod/);
  assert.match((ours.calls['before-initialize'] as Outcome).error, /must invoke Initialize/);
  assert.equal(ours.exit, 0);
});

test('images of kontain hosts, OCI layouts and dir: copies open without a registry', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-proxy-dir-'));
  try {
    await exec('skopeo', ['copy', '--quiet', '--policy', files.policy, `oci:${oci.dir}:v1`, `dir:${dir}`]);
    const result = await runClient<Scenario>('json-scenario', kontain(), ['random/proxy:2x1000', `oci:${oci.dir}:v1`, `dir:${dir}`, `oci:${oci.dir}:nope`], env());
    const [random, layout, copy, missing] = result.images;
    assert.equal(random!.blobs!.length, 2);
    for (const blob of random!.blobs!) assert.equal(blob.sha256, blob.digest, 'random layers verified and whole');
    assert.equal(layout!.manifest!.digest, oci.images[0]!.manifest.digest);
    assert.deepEqual(layout!.blobs!.map((b) => b.sha256), oci.images[0]!.layers.map((l) => l.digest));
    assert.equal(copy!.manifest!.digest, oci.images[0]!.manifest.digest);
    assert.deepEqual(copy!.blobs!.map((b) => b.sha256), oci.images[0]!.layers.map((l) => l.digest));
    assert.equal(missing!.open.success, false);
    assert.match(missing!.open.error, /no image tagged "nope"/);
    assert.equal(sha256(Buffer.from(layout!.manifest!.bytes, 'base64')), oci.images[0]!.manifest.digest);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
