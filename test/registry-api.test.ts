import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startKontain, type TestServer } from './support/kontain.js';
import { request, registryError } from './support/http.js';

let server: TestServer;
before(async () => {
  server = await startKontain({ KONTAIN_DOMAIN: 'kontain.test' });
});
after(() => server.stop());

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const url = (path: string) => `${server.url}${path}`;

async function expectError(path: string, status: number, code: string, message: RegExp, method = 'GET', headers: Record<string, string> = {}) {
  const res = await request(url(path), { method, headers });
  assert.equal(res.status, status, `${method} ${path}: ${res.body.toString()}`);
  assert.equal(res.headers['content-type'], 'application/json');
  const error = registryError(res);
  assert.equal(error.code, code);
  assert.match(error.message, message);
  return res;
}

test('GET /v2/ answers 200 with the API version header', async () => {
  const res = await request(url('/v2/'));
  assert.equal(res.status, 200);
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
  assert.equal(res.body.toString(), '{}');
});

test('HEAD and GET of a manifest by digest agree, and HEAD has no body', async () => {
  const created = await request(url('/v2/random/head/manifests/2x100'), { headers: { Accept: OCI_MANIFEST } });
  assert.equal(created.status, 200);
  const digest = created.headers['docker-content-digest'] as string;
  assert.equal(sha256(created.body), digest);
  assert.equal(Number(created.headers['content-length']), created.body.length);

  const head = await request(url(`/v2/random/head/manifests/${digest}`), { method: 'HEAD', headers: { Accept: OCI_MANIFEST } });
  const get = await request(url(`/v2/random/head/manifests/${digest}`), { headers: { Accept: OCI_MANIFEST } });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  for (const name of ['docker-content-digest', 'content-type', 'content-length']) {
    assert.equal(head.headers[name], get.headers[name], name);
  }
  assert.equal(get.headers['content-type'], OCI_MANIFEST);
  assert.deepEqual(get.body, created.body);
});

test('HEAD of a tag reports the digest of the image that GET by digest then serves', async () => {
  const head = await request(url('/v2/random/resolve/manifests/1x10'), { method: 'HEAD', headers: { Accept: OCI_MANIFEST } });
  assert.equal(head.status, 200);
  const digest = head.headers['docker-content-digest'] as string;
  const get = await request(url(`/v2/random/resolve/manifests/${digest}`), { headers: { Accept: OCI_MANIFEST } });
  assert.equal(get.status, 200);
  assert.equal(sha256(get.body), digest);
  assert.equal(Number(head.headers['content-length']), get.body.length);
});

describe('blobs', () => {
  let layerDigest: string;
  let layer: Buffer;
  before(async () => {
    const created = await request(url('/v2/random/blob/manifests/1x5000'), { headers: { Accept: OCI_MANIFEST } });
    layerDigest = (JSON.parse(created.body.toString()) as { layers: Array<{ digest: string }> }).layers[0]!.digest;
    const res = await request(url(`/v2/random/blob/blobs/${layerDigest}`));
    assert.equal(res.status, 200);
    layer = res.body;
    assert.equal(sha256(layer), layerDigest);
  });

  test('HEAD answers the size and digest from the store, with no body', async () => {
    const head = await request(url(`/v2/random/blob/blobs/${layerDigest}`), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers['content-length']), layer.length);
    assert.equal(head.headers['docker-content-digest'], layerDigest);
    assert.equal(head.headers['accept-ranges'], 'bytes');
    assert.equal(head.body.length, 0);
  });

  test('a Range request returns exactly the asked bytes', async () => {
    const res = await request(url(`/v2/random/blob/blobs/${layerDigest}`), { headers: { Range: 'bytes=100-1099' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], `bytes 100-1099/${layer.length}`);
    assert.deepEqual(res.body, layer.subarray(100, 1100));
    const open = await request(url(`/v2/random/blob/blobs/${layerDigest}`), { headers: { Range: 'bytes=4000-' } });
    assert.equal(open.status, 206);
    assert.deepEqual(open.body, layer.subarray(4000));
    const suffix = await request(url(`/v2/random/blob/blobs/${layerDigest}`), { headers: { Range: 'bytes=-10' } });
    assert.equal(suffix.status, 206);
    assert.deepEqual(suffix.body, layer.subarray(layer.length - 10));
  });

  test('an unsatisfiable Range gets 416 with the size', async () => {
    const res = await expectError(`/v2/random/blob/blobs/${layerDigest}`, 416, 'RANGE_INVALID', /outside the blob/, 'GET', {
      Range: `bytes=${layer.length}-`,
    });
    assert.equal(res.headers['content-range'], `bytes */${layer.length}`);
  });

  test('an absent blob is BLOB_UNKNOWN', async () => {
    await expectError(`/v2/random/blob/blobs/sha256:${'0'.repeat(64)}`, 404, 'BLOB_UNKNOWN', /not known/);
    const head = await request(url(`/v2/random/blob/blobs/sha256:${'0'.repeat(64)}`), { method: 'HEAD' });
    assert.equal(head.status, 404);
  });
});

test('an absent manifest digest is MANIFEST_UNKNOWN', async () => {
  await expectError(`/v2/random/x/manifests/sha256:${'1'.repeat(64)}`, 404, 'MANIFEST_UNKNOWN', /not known/);
});

describe('refusals', () => {
  for (const [method, path] of [
    ['POST', '/v2/random/x/blobs/uploads/'],
    ['PUT', '/v2/random/x/manifests/latest'],
    ['PATCH', '/v2/random/x/blobs/uploads/123'],
    ['DELETE', `/v2/random/x/manifests/sha256:${'a'.repeat(64)}`],
    ['DELETE', `/v2/random/x/blobs/sha256:${'a'.repeat(64)}`],
  ] as const) {
    test(`${method} ${path} is 405 UNSUPPORTED`, async () => {
      await expectError(path, 405, 'UNSUPPORTED', /read-only/, method);
    });
  }

  test('a repository name outside the grammar is NAME_INVALID', async () => {
    await expectError('/v2/random/Upper/manifests/latest', 400, 'NAME_INVALID', /invalid repository name "random\/Upper"/);
    await expectError('/v2/random/a..b/manifests/latest', 400, 'NAME_INVALID', /invalid repository name/);
    await expectError(`/v2/random/${'a'.repeat(260)}/manifests/latest`, 400, 'NAME_INVALID', /at most 255/);
  });

  test('malformed digests are DIGEST_INVALID', async () => {
    await expectError('/v2/random/x/manifests/sha256:abc', 400, 'DIGEST_INVALID', /64 lowercase hex/);
    await expectError(`/v2/random/x/blobs/sha256:${'A'.repeat(64)}`, 400, 'DIGEST_INVALID', /invalid digest/);
    await expectError('/v2/random/x/blobs/nodigest', 400, 'DIGEST_INVALID', /invalid digest/);
    await expectError(`/v2/random/x/blobs/sha512:${'a'.repeat(128)}`, 400, 'DIGEST_INVALID', /sha256 digests only/);
    await expectError('/v2/random/x/referrers/sha256:zz', 400, 'DIGEST_INVALID', /invalid digest/);
  });

  test('a tag that cannot exist is 404 MANIFEST_UNKNOWN saying why (TAG_INVALID is for pushes), on GET and HEAD', async () => {
    await expectError(`/v2/random/x/manifests/${'a'.repeat(129)}`, 404, 'MANIFEST_UNKNOWN', /1-128 characters/);
    await expectError('/v2/random/x/manifests/.INVALID', 404, 'MANIFEST_UNKNOWN', /no manifest can have the tag "\.INVALID"/);
    const head = await request(url('/v2/random/x/manifests/.INVALID'), { method: 'HEAD' });
    assert.equal(head.status, 404);
  });

  test('an unknown service is NAME_UNKNOWN, in both routing forms', async () => {
    await expectError('/v2/nosuch/x/manifests/latest', 404, 'NAME_UNKNOWN', /no service named "nosuch"/);
    const res = await request(url('/v2/x/manifests/latest'), { headers: { Host: 'nosuch.kontain.test' } });
    assert.equal(res.status, 404);
    assert.equal(registryError(res).code, 'NAME_UNKNOWN');
    assert.match(registryError(res).message, /host nosuch\.kontain\.test/);
  });

  test('random tags beyond the caps state the limit', async () => {
    await expectError('/v2/random/x/manifests/100x10', 404, 'MANIFEST_UNKNOWN', /100 layers; random images have 1 to 99 layers/);
    await expectError('/v2/random/x/manifests/0x10', 404, 'MANIFEST_UNKNOWN', /1 to 99 layers/);
    await expectError('/v2/random/x/manifests/1x100000000', 404, 'MANIFEST_UNKNOWN', /100000000 bytes; each random layer holds 1 to 99,999,999 bytes/);
    await expectError('/v2/random/x/manifests/1x100mb', 404, 'MANIFEST_UNKNOWN', /99,999,999 bytes/);
  });

  test('an unknown API path is a JSON 404', async () => {
    await expectError('/v2/random/x/nothing', 404, 'NAME_UNKNOWN', /no registry API route/);
  });
});

describe('routing', () => {
  test('host form: Host random.<domain> serves the whole path as the repository', async () => {
    const res = await request(url('/v2/foo/bar/manifests/2x10'), { headers: { Host: 'random.kontain.test', Accept: OCI_MANIFEST } });
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(res.body.toString()) as { layers: unknown[] }).layers.length, 2);
  });

  test('path form: any other host takes the service from the first segment', async () => {
    const res = await request(url('/v2/random/foo/manifests/3x10'), { headers: { Host: 'localhost:8080', Accept: OCI_MANIFEST } });
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(res.body.toString()) as { layers: unknown[] }).layers.length, 3);
  });
});

test('referrers: an empty OCI index for any well-formed digest, known or not (the spec forbids 404)', async () => {
  const created = await request(url('/v2/random/ref/manifests/1x10'), { headers: { Accept: OCI_MANIFEST } });
  const known = created.headers['docker-content-digest'] as string;
  const empty = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] };
  for (const digest of [known, `sha256:${'2'.repeat(64)}`]) {
    const res = await request(url(`/v2/random/ref/referrers/${digest}`));
    assert.equal(res.status, 200, digest);
    assert.equal(res.headers['content-type'], 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(JSON.parse(res.body.toString()), empty);
    assert.equal(res.headers['oci-filters-applied'], undefined);
  }
  const filtered = await request(url(`/v2/random/ref/referrers/${known}?artifactType=application%2Fvnd.example.sbom`));
  assert.equal(filtered.status, 200);
  assert.equal(filtered.headers['oci-filters-applied'], 'artifactType');
  assert.deepEqual(JSON.parse(filtered.body.toString()), empty);
});

test('tags/list of a host that makes any tag is an empty list', async () => {
  const res = await request(url('/v2/random/x/tags/list'));
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.body.toString()), { name: 'random/x', tags: [] });
  const none = await request(url('/v2/random/x/tags/list?n=0'));
  assert.deepEqual(JSON.parse(none.body.toString()), { name: 'random/x', tags: [] });
  assert.equal(none.headers.link, undefined);
  await expectError('/v2/random/x/tags/list?n=-1', 400, 'PAGINATION_NUMBER_INVALID', /n=-1/);
});

describe('pages', () => {
  test('the landing page of a host shows a pull command with the configured domain', async () => {
    const res = await request(url('/'), { headers: { Host: 'random.kontain.test' } });
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] as string, /text\/html/);
    assert.match(res.body.toString(), /docker pull random\.kontain\.test\/x:4x100/);
  });

  test('the bare domain lists every host', async () => {
    const res = await request(url('/'), { headers: { Host: 'kontain.test' } });
    assert.equal(res.status, 200);
    assert.match(res.body.toString(), /docker pull random\.kontain\.test\/x:4x100/);
  });

  test('/healthz is ok', async () => {
    const res = await request(url('/healthz'));
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'ok\n');
  });
});
