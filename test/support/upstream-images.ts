/**
 * Test images with known contents for the upstream registry: layer tars made from a file
 * list, a tiny OCI image layout (one image, or an index of several platforms) written
 * byte by byte so every digest is known, and `skopeo copy` to push it. skopeo is kept
 * away from the machine's own policy and auth files.
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ImageConfig, ImageIndex, ImageManifest, Platform, Descriptor, RuntimeConfig } from '../../src/oci/types.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import { exec } from './tools.js';
import { layerTar } from './rich-layers.js';

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');

/** An uncompressed tar of the given files (directories are implied by the paths). */
export function tarLayer(files: Record<string, string | Buffer>): Promise<Buffer> {
  return layerTar(Object.entries(files).map(([name, content]) => ({ type: 'file', name, content, mtime: new Date(0) })));
}

export interface TestImage {
  /** Uncompressed layer tars, bottom first; stored gzip-compressed. */
  layers: Buffer[];
  platform?: Platform;
  /** The runtime config (default `Cmd: ["/bin/sh"]`). */
  config?: RuntimeConfig;
}

export interface WrittenImage {
  manifest: Descriptor;
  manifestBytes: Buffer;
  config: Descriptor;
  layers: Descriptor[];
}

export interface WrittenLayout {
  dir: string;
  tag: string;
  /** What index.json's tag points at: the index when there are several images, else the manifest. */
  top: Descriptor;
  topBytes: Buffer;
  images: WrittenImage[];
  /** Every blob written, by digest (layers, configs, manifests). */
  blobs: Map<string, Buffer>;
}

/**
 * Writes an OCI image layout holding `images` under `tag`: one image → its manifest is
 * tagged; several → an OCI index of them is.
 */
export async function writeOciLayout(dir: string, tag: string, images: TestImage[]): Promise<WrittenLayout> {
  const blobs = new Map<string, Buffer>();
  const blobDir = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  const put = async (data: Buffer, mediaType: string, extra: Partial<Descriptor> = {}): Promise<Descriptor> => {
    const digest = sha256(data);
    blobs.set(digest, data);
    await writeFile(path.join(blobDir, digest.slice(7)), data);
    return { mediaType, digest, size: data.length, ...extra };
  };

  const written: WrittenImage[] = [];
  for (const image of images) {
    const platform = image.platform ?? { os: 'linux', architecture: 'amd64' };
    const compressed = image.layers.map((layer) => gzipSync(layer));
    const layers = [];
    for (const blob of compressed) layers.push(await put(blob, MediaType.ociLayerGzip));
    const config: ImageConfig = {
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: image.config ?? { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: image.layers.map(sha256) },
    };
    const configDescriptor = await put(Buffer.from(JSON.stringify(config)), MediaType.ociConfig);
    const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDescriptor, layers };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const manifestDescriptor = await put(manifestBytes, MediaType.ociManifest, images.length > 1 ? { platform } : {});
    written.push({ manifest: manifestDescriptor, manifestBytes, config: configDescriptor, layers });
  }

  let top: Descriptor;
  let topBytes: Buffer;
  if (written.length === 1) {
    top = written[0]!.manifest;
    topBytes = written[0]!.manifestBytes;
  } else {
    const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: written.map((w) => w.manifest) };
    topBytes = Buffer.from(JSON.stringify(index));
    top = await put(topBytes, MediaType.ociIndex);
  }
  const layoutIndex: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(layoutIndex));
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { dir, tag, top, topBytes, images: written, blobs };
}

/**
 * `skopeo copy oci:<layoutDir>:<tag> docker://<destination>` over plain HTTP, keeping the
 * exact manifest bytes (so digests in the layout are digests in the registry).
 */
export async function pushOciLayout(
  layout: { dir: string; tag: string },
  destination: string,
  options: { creds?: { username: string; password: string } } = {},
): Promise<void> {
  // A policy accepting anything and an empty auth file, so skopeo reads nothing of the user's.
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-skopeo-'));
  const policy = path.join(dir, 'policy.json');
  const authfile = path.join(dir, 'auth.json');
  try {
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await writeFile(authfile, JSON.stringify({ auths: {} }));
    await exec('skopeo', [
      'copy',
      '--quiet',
      '--policy', policy,
      '--all',
      '--preserve-digests',
      '--dest-tls-verify=false',
      '--dest-authfile', authfile,
      ...(options.creds ? ['--dest-creds', `${options.creds.username}:${options.creds.password}`] : ['--dest-no-creds']),
      `oci:${layout.dir}:${layout.tag}`,
      `docker://${destination}`,
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const layoutDirs = new Set<string>();
process.once('exit', () => {
  for (const dir of layoutDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp directory for a layout; removed when the process exits, if not before. */
export async function layoutDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-layout-'));
  layoutDirs.add(dir);
  return dir;
}
