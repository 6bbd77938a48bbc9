/**
 * Writes an OCI image layout directory by hand (oci-layout, index.json, blobs) from
 * uncompressed layer tars, one tagged image per entry, so tools such as umoci and skopeo
 * can read images whose every byte the test chose.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { MediaType } from '../../src/oci/mediatypes.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../../src/oci/types.js';

export interface LayoutImage {
  /** `org.opencontainers.image.ref.name` of the image in index.json. */
  tag: string;
  /** Uncompressed layer tars, bottom first; stored gzip-compressed. */
  layers: Buffer[];
  /** Config fields to merge over a minimal linux/amd64 config (rootfs is always computed). */
  config?: object;
}

export interface WrittenLayoutImage {
  tag: string;
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  diffIDs: string[];
}

const sha256 = (data: Buffer): string => 'sha256:' + createHash('sha256').update(data).digest('hex');

export async function writeOciLayout(dir: string, images: LayoutImage[]): Promise<WrittenLayoutImage[]> {
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const putBlob = async (data: Buffer, mediaType: string): Promise<Descriptor> => {
    const digest = sha256(data);
    await writeFile(path.join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), data);
    return { mediaType, digest, size: data.length };
  };

  const written: WrittenLayoutImage[] = [];
  for (const image of images) {
    const layers: Descriptor[] = [];
    for (const tar of image.layers) layers.push(await putBlob(gzipSync(tar), MediaType.ociLayerGzip));
    const diffIDs = image.layers.map(sha256);
    const config = {
      architecture: 'amd64',
      os: 'linux',
      config: {},
      ...image.config,
      rootfs: { type: 'layers', diff_ids: diffIDs },
      history: diffIDs.map(() => ({ created_by: 'test' })),
    };
    const configDescriptor = await putBlob(Buffer.from(JSON.stringify(config)), MediaType.ociConfig);
    const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDescriptor, layers };
    const manifestDescriptor = await putBlob(Buffer.from(JSON.stringify(manifest)), MediaType.ociManifest);
    written.push({ tag: image.tag, manifest: manifestDescriptor, config: configDescriptor, layers, diffIDs });
  }

  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: written.map((w) => ({
      ...w.manifest,
      platform: { architecture: 'amd64', os: 'linux' },
      annotations: { 'org.opencontainers.image.ref.name': w.tag },
    })),
  };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return written;
}
