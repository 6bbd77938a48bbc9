/**
 * Writes one image, read through kontain's registry client, as an OCI image layout: the
 * run image a buildpack build's lifecycle reads from its layout directory. Blobs are
 * streamed to files (verified by the client as they come), the manifest kept as its exact
 * bytes, so digests in the layout are the registry's. Bounded by `maxBytes` in all.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { digestHex } from '../oci/digest.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';
import type { RegistryClient } from '../remote/client.js';
import type { Reference } from '../remote/reference.js';
import { BuildOutputRefused } from './executor.js';

export interface LayoutImage {
  ref: Reference;
  manifest: ImageManifest;
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

export async function writeImageLayout(client: RegistryClient, image: LayoutImage, dir: string, maxBytes: number, signal?: AbortSignal): Promise<void> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  let left = maxBytes;
  for (const blob of [image.manifest.config, ...(image.manifest.layers ?? [])]) {
    left -= blob.size;
    if (left < 0) throw new BuildOutputRefused(`the run image ${image.ref.registry}/${image.ref.repository} is larger than ${maxBytes} bytes (KONTAIN_BUILD_MAX_OUTPUT_BYTES)`);
    const { stream } = await client.blob(image.ref, blob.digest, { size: blob.size });
    // The client checks each blob's size and digest as it streams.
    await pipeline(stream, createWriteStream(path.join(blobs, digestHex(blob.digest))), { signal });
  }
  await writeFile(path.join(blobs, digestHex(image.digest)), image.bytes);
  const top: Descriptor = { mediaType: image.mediaType, digest: image.digest, size: image.bytes.length };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [top] }));
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}
