/**
 * A static tree made to go wrong: symlinks out of the root (a manifest, a blob, a tag
 * directory, a repository directory), a manifest over the size limit, one that is not
 * JSON, one whose mediaType cannot be a header, a FIFO where a manifest should be, blob files of the wrong size or with a flipped
 * byte, a repository with too many entries, an oversized OCI index.json, and names with
 * `..`. The static host must answer each with a registry error saying what is wrong (no
 * 500, no hang, nothing from outside the root), and `kontain export nginx` must leave each
 * out of the configuration it writes, saying so on stderr.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { startNginx, type RunningNginx } from './support/nginx.js';
import { exec } from './support/tools.js';
import { request, registryError, type HttpResult } from './support/http.js';
import { oneLayerImage as image, writeDirCopy as dirCopy } from './support/static-tree.js';
import { MediaType } from '../src/oci/mediatypes.js';

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');
const hex = (digest: string) => digest.slice(7);
const entry = path.resolve(import.meta.dirname, '../cmd/kontain.js');

let work: string;
let root: string;
let kontain: TestServer;
const secret = Buffer.from(`secret outside the root ${randomBytes(8).toString('hex')}\n`);
// Several read chunks, so a mismatch is found after the answer has begun.
const good = image(randomBytes(3 * 1024 * 1024));
const outsider = image(Buffer.from('an image outside the root\n'));
const leak = image(secret);
const wrongSize = image(randomBytes(1000));
const flipped = image(randomBytes(3 * 1024 * 1024));
const flippedForRange = image(randomBytes(100_000));
const flip = (b: Buffer) => {
  const copy = Buffer.from(b);
  copy[copy.length - 10]! ^= 0xff;
  return copy;
};

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-static-hostile-'));
  root = path.join(work, 'root');
  const outside = path.join(work, 'outside');
  await mkdir(outside, { recursive: true });
  await writeFile(path.join(outside, 'secret'), secret);
  await dirCopy(path.join(outside, 'img', '1'), outsider);

  await dirCopy(path.join(root, 'good', '1'), good);
  // A symlink that stays inside the root is followed.
  await symlink('1', path.join(root, 'good', 'latest'));
  // A tag directory, a manifest file, a repository directory and a blob file leading out.
  await symlink(path.join(outside, 'img', '1'), path.join(root, 'good', 'out'));
  await mkdir(path.join(root, 'escape', '1'), { recursive: true });
  await symlink(path.join(outside, 'img', '1', 'manifest.json'), path.join(root, 'escape', '1', 'manifest.json'));
  await symlink(path.join(outside, 'img'), path.join(root, 'escdir'));
  await dirCopy(path.join(root, 'leak', '1'), leak);
  await rm(path.join(root, 'leak', '1', hex(sha256(leak.layer))));
  await symlink(path.join(outside, 'secret'), path.join(root, 'leak', '1', hex(sha256(leak.layer))));
  // A manifest over 4 MiB (valid JSON, padded), one that is not JSON, and a FIFO.
  await mkdir(path.join(root, 'big', '1'), { recursive: true });
  await writeFile(path.join(root, 'big', '1', 'manifest.json'), Buffer.concat([good.manifest.subarray(0, -1), Buffer.alloc(5 * 1024 * 1024, ' '), Buffer.from('}')]));
  await mkdir(path.join(root, 'bad', '1'), { recursive: true });
  await writeFile(path.join(root, 'bad', '1', 'manifest.json'), '{"schemaVersion": 2, "config": ');
  await mkdir(path.join(root, 'ctl', '1'), { recursive: true });
  await writeFile(path.join(root, 'ctl', '1', 'manifest.json'), good.manifest.toString().replace(MediaType.ociManifest, 'application/x\\u0001y'));
  await mkdir(path.join(root, 'fifo', '1'), { recursive: true });
  await exec('mkfifo', [path.join(root, 'fifo', '1', 'manifest.json')]);
  // Blob files that are not what their digest says.
  await dirCopy(path.join(root, 'sizes', '1'), wrongSize, Buffer.concat([wrongSize.layer, Buffer.from('more')]));
  await dirCopy(path.join(root, 'flipped', '1'), flipped, flip(flipped.layer));
  await dirCopy(path.join(root, 'ranged', '1'), flippedForRange, flip(flippedForRange.layer));
  // An OCI layout whose index.json is over the limit.
  await mkdir(path.join(root, 'layout'), { recursive: true });
  await writeFile(path.join(root, 'layout', 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(path.join(root, 'layout', 'index.json'), Buffer.concat([Buffer.from('{"schemaVersion":2,"manifests":[]'), Buffer.alloc(5 * 1024 * 1024, ' '), Buffer.from('}')]));
  // A repository with more entries than the static host reads (10,000).
  await mkdir(path.join(root, 'many'), { recursive: true });
  await dirCopy(path.join(root, 'many', 't0'), good);
  for (let i = 1; i <= 10_000; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, j) => mkdir(path.join(root, 'many', `t${i + j}`))));
  }
  kontain = await startKontain({ KONTAIN_STATIC_ROOT: root });
});

after(async () => {
  await kontain?.stop();
  await rm(work, { recursive: true, force: true });
});

const get = (p: string, headers: Record<string, string> = {}) => request(`${kontain.url}${p}`, { headers: { accept: MediaType.ociManifest, ...headers } });

/** A 424 registry error whose message matches. */
function refused(res: HttpResult, message: RegExp, what: string): void {
  assert.equal(res.status, 424, `${what}: ${res.status} ${res.body.toString().slice(0, 300)}`);
  const error = registryError(res);
  assert.equal(error.code, 'UNAVAILABLE', what);
  assert.match(error.message, message, what);
  assert.ok(!error.message.includes(work), `${what}: the message names no path of the machine`);
  assert.ok(!res.body.includes(secret), what);
}

describe('static host', () => {
  test('a symlink inside the root is followed; a tag, manifest, repository or blob leading out is refused', async () => {
    const latest = await get('/v2/static/good/manifests/latest');
    assert.equal(latest.status, 200);
    assert.equal(latest.headers['docker-content-digest'], good.digest);
    const blob = await get(`/v2/static/good/blobs/${sha256(good.layer)}`);
    assert.equal(sha256(blob.body), sha256(good.layer));

    refused(await get('/v2/static/good/manifests/out'), /good\/out leads out of the static root/, 'tag directory');
    refused(await get('/v2/static/escape/manifests/1'), /escape\/1\/manifest.json leads out of the static root/, 'manifest file');
    refused(await get('/v2/static/escdir/manifests/1'), /escdir leads out of the static root/, 'repository directory');
    refused(await get('/v2/static/escdir/tags/list'), /leads out of the static root/, 'repository directory tags');
    refused(await get(`/v2/static/leak/blobs/${sha256(leak.layer)}`), /leak\/1\/[0-9a-f]{64} leads out of the static root/, 'blob file');
    assert.equal((await request(`${kontain.url}/v2/static/leak/blobs/${sha256(leak.layer)}`, { method: 'HEAD' })).status, 424, 'blob HEAD');
    // The tag leading out is not listed; the one inside is.
    const tags = JSON.parse((await get('/v2/static/good/tags/list')).body.toString()) as { tags: string[] };
    assert.deepEqual(tags.tags, ['1', 'latest']);
    // The outside image's own blobs are not served under any name of the tree.
    const outsideConfig = await get(`/v2/static/good/blobs/${sha256(outsider.config)}`);
    assert.equal(outsideConfig.status, 404);
  });

  test('a manifest over the limit, one that is not JSON, one whose mediaType is no header value, and a FIFO are clear errors', async () => {
    refused(await get('/v2/static/big/manifests/1'), /big\/1\/manifest.json is \d+ bytes, over the 4194304 byte limit/, 'oversized');
    refused(await get('/v2/static/bad/manifests/1'), /bad\/1\/manifest.json is not valid JSON/, 'malformed');
    refused(await get('/v2/static/fifo/manifests/1'), /fifo\/1\/manifest.json is not a regular file/, 'fifo');
    refused(await get('/v2/static/ctl/manifests/1'), /ctl\/1\/manifest.json has a mediaType that cannot be sent as a Content-Type/, 'control character in mediaType');
    refused(await get('/v2/static/layout/manifests/x'), /layout\/index.json is \d+ bytes, over the 4194304 byte limit/, 'index.json');
    refused(await get('/v2/static/layout/tags/list'), /index.json/, 'index.json tags');
    // Broken tags are not listed.
    assert.equal((await get('/v2/static/bad/tags/list')).body.toString(), JSON.stringify({ name: 'static/bad', tags: [] }));
  });

  test('a blob file of the wrong size is refused before any byte', async () => {
    const digest = sha256(wrongSize.layer);
    refused(await get(`/v2/static/sizes/blobs/${digest}`), /is 1004 bytes, but its manifest says .* is 1000/, 'GET');
  });

  test('a blob file with a flipped byte never arrives complete, and is refused from then on', async () => {
    const digest = sha256(flipped.layer);
    const head = await request(`${kontain.url}/v2/static/flipped/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200, 'the size is right: nothing says otherwise before the bytes are read');
    await assert.rejects(get(`/v2/static/flipped/blobs/${digest}`), /aborted|ECONNRESET|socket hang up/, 'the first GET is cut off');
    refused(await get(`/v2/static/flipped/blobs/${digest}`), /flipped\/1\/[0-9a-f]{64} does not hash to/, 'GET again');
    refused(await get(`/v2/static/flipped/blobs/${digest}`, { range: 'bytes=0-9' }), /does not hash to/, 'a range of it');
    // A range of a file never read whole is checked whole first.
    refused(await get(`/v2/static/ranged/blobs/${sha256(flippedForRange.layer)}`, { range: 'bytes=0-9' }), /ranged\/1\/[0-9a-f]{64} does not hash to/, 'first range');
    // A good file is served whole, and by range.
    const part = await get(`/v2/static/good/blobs/${sha256(good.layer)}`, { range: 'bytes=5-14' });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, good.layer.subarray(5, 15));
  });

  test('a repository with more than 10,000 entries is refused, not read', async () => {
    refused(await get('/v2/static/many/tags/list'), /many has more than 10000 entries/, 'tags/list');
    refused(await get('/v2/static/many/manifests/t0'), /many has more than 10000 entries/, 'manifest');
    assert.equal((await get('/v2/')).status, 200);
  });

  test('names and tags with .. reach nothing outside the repository', async () => {
    // Sent as written: an HTTP client would normalise the dots away.
    const raw = (target: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(kontain.port, '127.0.0.1', () => socket.end(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
        socket.on('error', reject);
      });
    const targets = [
      '/v2/static/../outside/img/manifests/1',
      '/v2/static/good/../../outside/img/manifests/1',
      '/v2/static/good/%2e%2e/escape/manifests/1',
      '/v2/static/good/..%2f..%2foutside%2fimg/manifests/1',
      '/v2/static/good/manifests/..',
      '/v2/static/good/manifests/%2e%2e%2fescape',
      `/v2/static/good/blobs/..%2f..%2f..%2foutside%2fsecret`,
    ];
    for (const target of targets) {
      const answer = await raw(target);
      const status = Number(answer.split(' ')[1]);
      assert.ok(status === 400 || status === 404, `${target}: ${answer.split('\r\n')[0]}`);
      assert.match(answer, /"code":"(NAME_INVALID|NAME_UNKNOWN|TAG_INVALID|MANIFEST_UNKNOWN|DIGEST_INVALID|BLOB_UNKNOWN)"/, target);
      assert.ok(!answer.includes(secret.toString()) && !answer.includes(outsider.digest), target);
    }
  });
});

describe('kontain export nginx', () => {
  let stdout: string;
  let stderr: string;
  let nginx: RunningNginx;

  before(async () => {
    ({ stdout, stderr } = await exec(process.execPath, [entry, 'export', 'nginx', '--name-prefix', 'static', root]));
    nginx = await startNginx(stdout);
  });
  after(async () => {
    await nginx?.stop();
  });

  test('has no location for anything leading out of the root, and says what it left out', () => {
    assert.ok(!stdout.includes(path.join(work, 'outside')), 'no path outside the root');
    assert.ok(!stdout.includes('/v2/static/escdir/'), 'no repository leading out');
    assert.ok(!stdout.includes('/v2/static/good/manifests/out '), 'no tag leading out');
    assert.ok(!stdout.includes(`/v2/static/leak/blobs/${sha256(leak.layer)} `), 'no blob leading out');
    assert.match(stdout, /location = \/v2\/static\/good\/manifests\/latest \{\n {4}alias "[^"]*\/good\/1\/manifest.json";/, 'an inside symlink is written as its real path');
    // A symlinked directory is not walked into at all (escdir): nothing to say about it.
    for (const said of [/good:out: good\/out leads out/, /escape:1: escape\/1\/manifest.json leads out/, /leak\/1\/[0-9a-f]{64} leads out/]) {
      assert.match(stderr, said);
    }
  });

  test('leaves out oversized, malformed, FIFO and unsendable-type manifests, blobs that do not match, and a repository too large', () => {
    assert.match(stderr, /big:1: big\/1\/manifest.json is \d+ bytes, over the 4194304 byte limit/);
    assert.match(stderr, /bad:1: bad\/1\/manifest.json is not valid JSON/);
    assert.match(stderr, /fifo:1: fifo\/1\/manifest.json is not a regular file/);
    assert.match(stderr, /ctl:1: ctl\/1\/manifest.json has a mediaType that cannot be sent as a Content-Type/);
    assert.match(stderr, /layout: layout\/index.json is \d+ bytes/);
    assert.match(stderr, /sizes@sha256:[0-9a-f]{64}: sizes\/1\/[0-9a-f]{64} is 1004 bytes/);
    assert.match(stderr, /flipped@sha256:[0-9a-f]{64}: flipped\/1\/[0-9a-f]{64} does not hash to/);
    assert.match(stderr, /many has more than 10000 entries/);
    assert.ok(!stdout.includes(`/v2/static/flipped/blobs/${sha256(flipped.layer)} `));
    assert.ok(!stdout.includes(`/v2/static/sizes/blobs/${sha256(wrongSize.layer)} `));
  });

  test('nginx serves the good image and answers the rest with JSON 404s', async () => {
    const url = (p: string) => `http://${nginx.address}${p}`;
    const latest = await request(url('/v2/static/good/manifests/latest'));
    assert.equal(latest.status, 200);
    assert.equal(sha256(latest.body), good.digest);
    for (const [p, code] of [
      [`/v2/static/flipped/blobs/${sha256(flipped.layer)}`, 'BLOB_UNKNOWN'],
      [`/v2/static/leak/blobs/${sha256(leak.layer)}`, 'BLOB_UNKNOWN'],
      ['/v2/static/escape/manifests/1', 'MANIFEST_UNKNOWN'],
      ['/v2/static/escdir/manifests/1', 'NAME_UNKNOWN'],
    ] as const) {
      const res = await request(url(p));
      assert.equal(res.status, 404, p);
      assert.equal(registryError(res).code, code, p);
      assert.ok(!res.body.includes(secret), p);
    }
  });
});
