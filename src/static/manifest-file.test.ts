import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MediaType } from '../oci/mediatypes.js';
import { sha256Digest } from '../oci/digest.js';
import { manifestMediaType, parseManifestFile } from './manifest-file.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

test('a manifest without mediaType is typed from its content', () => {
  assert.equal(manifestMediaType({ schemaVersion: 2, config: { mediaType: MediaType.ociConfig, digest: d('a') }, layers: [] }), MediaType.ociManifest);
  assert.equal(manifestMediaType({ schemaVersion: 2, config: { mediaType: MediaType.dockerConfig, digest: d('a') }, layers: [] }), MediaType.dockerManifest);
  assert.equal(manifestMediaType({ schemaVersion: 2, manifests: [] }), MediaType.ociIndex);
  assert.equal(manifestMediaType({ schemaVersion: 1, signatures: [] }), MediaType.dockerSchema1Signed);
  assert.equal(manifestMediaType({ schemaVersion: 2 }), undefined);
  assert.equal(manifestMediaType({ schemaVersion: 3, manifests: [] }), undefined);
  // A stated type is kept as it is.
  assert.equal(manifestMediaType({ schemaVersion: 2, mediaType: MediaType.dockerManifestList, manifests: [] }), MediaType.dockerManifestList);
});

test('parseManifestFile gives the digest of the exact bytes and what the manifest references', () => {
  const bytes = Buffer.from(`{"schemaVersion":2,"config":{"digest":"${d('c')}"},"layers":[{"digest":"${d('1')}"},{"digest":"${d('2')}"}]}\n`);
  const parsed = parseManifestFile('/x/manifest.json', bytes)!;
  assert.equal(parsed.digest, sha256Digest(bytes));
  assert.equal(parsed.mediaType, MediaType.ociManifest);
  assert.deepEqual(parsed.blobs, [d('c'), d('1'), d('2')]);
  const index = parseManifestFile('/x/manifest.json', Buffer.from(`{"schemaVersion":2,"manifests":[{"digest":"${d('e')}"}]}`))!;
  assert.deepEqual(index.children, [d('e')]);
  assert.deepEqual(index.blobs, []);
  assert.equal(parseManifestFile('/x', Buffer.from('not json')), undefined);
  assert.equal(parseManifestFile('/x', Buffer.from('null')), undefined);
  assert.equal(parseManifestFile('/x', Buffer.from('{"layers":[]}')), undefined);
});
