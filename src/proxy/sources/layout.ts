/**
 * Images in files: an OCI image layout (`oci:DIR[:TAG]`) and skopeo's `dir:PATH` copy
 * (manifest.json, blobs named by their hex digest, an index's images as
 * `<hex>.manifest.json`). Blobs are verified like upstream ones: files can be wrong too.
 */
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { digestHex, isSha256Digest, sha256Digest } from '../../oci/digest.js';
import { MediaType, isIndexType, isManifestType } from '../../oci/mediatypes.js';
import type { ImageIndex, StoredManifest } from '../../oci/types.js';
import { ImageNotFound, MAX_MANIFEST_BYTES, verified, type ImageSource, type SourceBlob } from '../image-source.js';

/** A small file whole, or undefined when it does not exist. */
async function readSmallFile(file: string): Promise<Buffer | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { size } = await handle.stat();
    if (size > MAX_MANIFEST_BYTES) throw new Error(`${file} is ${size} bytes; a manifest is at most ${MAX_MANIFEST_BYTES}`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** The manifest's media type from its own field, else from its shape. */
export function manifestOf(bytes: Buffer, what: string, expectedDigest?: string): StoredManifest {
  const digest = sha256Digest(bytes);
  if (expectedDigest && digest !== expectedDigest) throw new Error(`${what} hashes to ${digest}, not ${expectedDigest}`);
  let parsed: { mediaType?: unknown; manifests?: unknown; config?: unknown; schemaVersion?: unknown };
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
  } catch {
    throw new Error(`${what} is not JSON`);
  }
  let mediaType = typeof parsed?.mediaType === 'string' ? parsed.mediaType : undefined;
  if (!mediaType && parsed?.schemaVersion === 1) mediaType = MediaType.dockerSchema1;
  mediaType ??= Array.isArray(parsed?.manifests) ? MediaType.ociIndex : parsed?.config ? MediaType.ociManifest : undefined;
  if (!mediaType || !(isManifestType(mediaType) || isIndexType(mediaType) || mediaType.startsWith(MediaType.dockerSchema1))) {
    throw new Error(`${what} is not an image manifest or index`);
  }
  return { bytes, mediaType, digest };
}

abstract class FileImageSource implements ImageSource {
  constructor(
    readonly name: string,
    readonly top: StoredManifest,
  ) {}

  protected abstract blobPath(digest: string): string;
  protected abstract manifestPath(digest: string): string;

  async manifest(digest: string): Promise<StoredManifest> {
    if (!isSha256Digest(digest)) throw new Error(`${JSON.stringify(digest)} is not a sha256 digest`);
    const bytes = await readSmallFile(this.manifestPath(digest));
    if (!bytes) throw new Error(`${this.name} has no manifest ${digest}`);
    return manifestOf(bytes, `manifest ${digest} of ${this.name}`, digest);
  }

  async blob(digest: string, size?: number): Promise<SourceBlob> {
    if (!isSha256Digest(digest)) throw new Error(`${JSON.stringify(digest)} is not a sha256 digest`);
    const file = this.blobPath(digest);
    let length: number;
    try {
      length = (await stat(file)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${this.name} has no blob ${digest}`);
      throw err;
    }
    return { stream: verified(this.name, createReadStream(file, { highWaterMark: 1 << 20 }), digest, size ?? length), size: size ?? length };
  }

  async close(): Promise<void> {}
}

export class OciLayoutSource extends FileImageSource {
  private constructor(name: string, top: StoredManifest, private readonly dir: string) {
    super(name, top);
  }

  /** `DIR[:TAG]`: without a tag the layout must hold exactly one image. */
  static async open(spec: string, name: string): Promise<OciLayoutSource> {
    const colon = spec.lastIndexOf(':');
    const [dir, tag] = colon > spec.lastIndexOf('/') ? [spec.slice(0, colon), spec.slice(colon + 1)] : [spec, undefined];
    const indexBytes = await readSmallFile(path.join(dir, 'index.json'));
    if (!indexBytes) throw new Error(`${dir} is not an OCI image layout: it has no index.json`);
    let index: ImageIndex;
    try {
      index = JSON.parse(indexBytes.toString('utf8')) as ImageIndex;
    } catch {
      throw new Error(`${dir}/index.json is not JSON`);
    }
    const entries = Array.isArray(index.manifests) ? index.manifests : [];
    const chosen = tag === undefined ? (entries.length === 1 ? entries[0] : undefined) : entries.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
    if (!chosen) {
      throw new ImageNotFound(tag === undefined ? `${dir} holds ${entries.length} images: name one with oci:${dir}:TAG` : `no image tagged ${JSON.stringify(tag)} in ${dir}`);
    }
    if (!isSha256Digest(chosen.digest)) throw new Error(`${dir}/index.json names ${JSON.stringify(chosen.digest)}, not a sha256 digest`);
    const bytes = await readSmallFile(path.join(dir, 'blobs', 'sha256', digestHex(chosen.digest)));
    if (!bytes) throw new Error(`${dir} has no blob for its manifest ${chosen.digest}`);
    return new OciLayoutSource(name, manifestOf(bytes, `manifest ${chosen.digest} of ${name}`, chosen.digest), dir);
  }

  protected blobPath(digest: string): string {
    return path.join(this.dir, 'blobs', 'sha256', digestHex(digest));
  }

  protected manifestPath(digest: string): string {
    return this.blobPath(digest);
  }
}

export class DirSource extends FileImageSource {
  private constructor(name: string, top: StoredManifest, private readonly dir: string) {
    super(name, top);
  }

  static async open(dir: string, name: string): Promise<DirSource> {
    const bytes = await readSmallFile(path.join(dir, 'manifest.json'));
    if (!bytes) throw new ImageNotFound(`${dir} has no manifest.json`);
    return new DirSource(name, manifestOf(bytes, `${dir}/manifest.json`), dir);
  }

  protected blobPath(digest: string): string {
    return path.join(this.dir, digestHex(digest));
  }

  protected manifestPath(digest: string): string {
    return path.join(this.dir, `${digestHex(digest)}.manifest.json`);
  }
}
