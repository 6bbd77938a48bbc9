import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ContentStore } from './store.js';
import { RepositoryLinks, referencedBy } from './links.js';
import { collectGarbage } from './gc.js';
import { FsBackend } from '../storage/fs.js';
import { MediaType } from '../oci/mediatypes.js';
import { sha256Digest } from '../oci/digest.js';

const HOUR = 3600 * 1000;

async function withStore(fn: (store: ContentStore, dir: string) => Promise<void>) {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-links-'));
  try {
    await fn(new ContentStore(new FsBackend(dir)), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a manifest links itself and what it names, under its service and repository only', () =>
  withStore(async (store) => {
    const layer = await store.putBlobBytes(Buffer.from('layer'));
    const config = await store.putBlobBytes(Buffer.from('{}'));
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { ...config, mediaType: MediaType.ociConfig }, layers: [{ ...layer, mediaType: MediaType.ociLayerGzip }] }));
    const manifest = { bytes, mediaType: MediaType.ociManifest, digest: sha256Digest(bytes) };
    await store.links.addManifest('mirror', 'lib/app', manifest);
    assert.deepEqual(await store.links.find('mirror', 'lib/app', layer.digest), layer);
    assert.deepEqual(await store.links.find('mirror', 'lib/app', manifest.digest), { digest: manifest.digest, size: bytes.length });
    // Read back from the store by another instance (nothing in its memory).
    const other = new ContentStore(store.backend);
    assert.deepEqual(await other.links.find('mirror', 'lib/app', config.digest), config);
    assert.equal(await other.links.find('mirror', 'lib/other', layer.digest), undefined);
    assert.equal(await other.links.find('random', 'lib/app', layer.digest), undefined);
  }));

test('the longest valid repository gives a short object name', () => {
  const name = RepositoryLinks.linkName('mirror', `${'a'.repeat(120)}/${'b'.repeat(130)}`, sha256Digest('x'));
  assert.ok(name.split('/').every((part) => part.length <= 64), name);
  assert.equal(RepositoryLinks.digestOf(name), sha256Digest('x'));
});

test('an index links its child manifests; malformed entries are skipped', () => {
  const child = sha256Digest('child');
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ digest: child, size: 5 }, { digest: 'nope', size: 1 }, null, { digest: child, size: -1 }] }));
  assert.deepEqual(referencedBy({ bytes, mediaType: MediaType.ociIndex, digest: sha256Digest(bytes) }), [{ digest: child, size: 5 }]);
});

test('garbage collection deletes old links whose content is gone, and keeps the others', () =>
  withStore(async (store) => {
    const kept = await store.putBlobBytes(Buffer.from('kept by a pointer'));
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { ...kept, mediaType: MediaType.ociConfig }, layers: [] }));
    const manifest = await store.putManifest(bytes, MediaType.ociManifest);
    await store.setPointer('mirror', 'lib/app:v1', manifest);
    const gone = sha256Digest('never stored');
    await store.links.add('mirror', 'lib/app', [kept, { digest: gone, size: 3 }, { digest: manifest.digest, size: manifest.size }]);
    const young = await collectGarbage(store);
    assert.equal(young.linksDeleted, 0, 'young links are kept');
    const later = await collectGarbage(store, { now: Date.now() + 2 * HOUR });
    assert.equal(later.linksDeleted, 1);
    const fresh = new ContentStore(store.backend);
    assert.equal(await fresh.links.find('mirror', 'lib/app', gone), undefined);
    assert.deepEqual(await fresh.links.find('mirror', 'lib/app', kept.digest), kept);
    assert.ok(await fresh.links.find('mirror', 'lib/app', manifest.digest));
  }));
