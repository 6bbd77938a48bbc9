/**
 * Reads an OCI image layout (what buildah writes for `-t oci:DIR`) into the content
 * store: every blob streamed in and checked against its digest, manifests stored as
 * their exact bytes. Bounded: the image may not be larger than `maxBytes`.
 */
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import type { ContentStore } from '../content/store.js';
import { isSha256Digest, digestHex, sha256Digest } from '../oci/digest.js';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../oci/types.js';
import { readLimited } from '../util/byte-limit.js';
import { BuildOutputRefused } from './executor.js';

const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** The layout's first image (or index), stored; returns its descriptor. */
export async function importOciLayout(store: ContentStore, dir: string, maxBytes: number): Promise<Descriptor> {
  const index = JSON.parse((await readJSONFile(path.join(dir, 'index.json'))).toString('utf8')) as ImageIndex;
  const top = index.manifests?.[0];
  if (!top) throw new BuildOutputRefused('the build wrote no image (its OCI layout has an empty index)');
  const budget = { left: maxBytes, max: maxBytes };
  const stored = await importManifest(store, dir, top, budget, 0);
  return { mediaType: stored.mediaType, digest: stored.digest, size: stored.size };
}

interface Budget {
  left: number;
  max: number;
}

async function importManifest(store: ContentStore, dir: string, descriptor: Descriptor, budget: Budget, depth: number): Promise<Descriptor> {
  const bytes = await readJSONFile(blobPath(dir, descriptor.digest));
  if (sha256Digest(bytes) !== descriptor.digest) throw new BuildOutputRefused(`the build's manifest ${descriptor.digest} does not match its digest`);
  const parsed = JSON.parse(bytes.toString('utf8')) as ImageManifest & ImageIndex;
  const mediaType = parsed.mediaType ?? descriptor.mediaType;
  if (isIndexType(mediaType)) {
    if (depth > 0) throw new BuildOutputRefused('the build wrote a nested index');
    for (const child of parsed.manifests ?? []) await importManifest(store, dir, child, budget, depth + 1);
  } else if (isManifestType(mediaType)) {
    for (const blob of [parsed.config, ...(parsed.layers ?? [])]) await importBlob(store, dir, blob, budget);
  } else {
    throw new BuildOutputRefused(`the build wrote a manifest of type ${mediaType}`);
  }
  return store.putManifest(bytes, mediaType);
}

async function importBlob(store: ContentStore, dir: string, descriptor: Descriptor, budget: Budget): Promise<void> {
  const file = blobPath(dir, descriptor.digest);
  const info = await lstat(file);
  if (!info.isFile()) throw new BuildOutputRefused(`the build's blob ${descriptor.digest} is not a file`);
  budget.left -= info.size;
  if (budget.left < 0) throw new BuildOutputRefused(`the built image is larger than the limit of ${budget.max} bytes (KONTAIN_BUILD_MAX_OUTPUT_BYTES)`);
  if (await store.statBlob(descriptor.digest)) return;
  await store.putBlob(createReadStream(file), descriptor.digest);
}

function blobPath(dir: string, digest: string): string {
  if (!isSha256Digest(digest)) throw new BuildOutputRefused(`the build's OCI layout names ${JSON.stringify(digest)}, not a sha256 digest`);
  return path.join(dir, 'blobs', 'sha256', digestHex(digest));
}

async function readJSONFile(file: string): Promise<Buffer> {
  return readLimited(createReadStream(file), MAX_JSON_BYTES, () => new BuildOutputRefused(`${path.basename(file)} in the build's OCI layout is larger than ${MAX_JSON_BYTES} bytes`));
}
