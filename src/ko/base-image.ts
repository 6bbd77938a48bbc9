/**
 * The base image of a ko build, read through the registry client: one image, or the
 * platform images of an index (ko's rules: attestation entries `unknown/unknown` and
 * nested indexes are skipped). Its layers are copied into the content store, because the
 * built image names them and every blob it names must be pullable from kontain.
 */
import type { ContentStore } from '../content/store.js';
import { familyOf, isIndexType, type FormatFamily } from '../oci/mediatypes.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from '../oci/types.js';
import type { RegistryClient } from '../remote/client.js';
import { formatReference, parseReference, type Reference } from '../remote/reference.js';
import { platformOf } from '../oci/image.js';

/** A base image nothing can be built on (no Linux image in it). */
export class BaseImageUnusable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BaseImageUnusable';
  }
}

export interface BasePlatformImage {
  platform: Platform;
  /** The entry of the base index (with its platform, urls, annotations), or the manifest's own descriptor. */
  descriptor: Descriptor;
  manifest: ImageManifest;
  config: ImageConfig;
}

export interface BaseImage {
  /** The reference as configured (for the base.name annotation). */
  name: string;
  ref: Reference;
  /** The digest of what the reference resolves to (index or manifest). */
  digest: string;
  family: FormatFamily;
  /** An index (build every platform, answer an index) or a single image. */
  isIndex: boolean;
  images: BasePlatformImage[];
}

/** The base reference's digest now: one HEAD, for the cache check. */
export async function resolveBase(client: RegistryClient, name: string): Promise<string> {
  return (await client.resolve(parseReference(name))).digest;
}

export async function fetchBaseImage(client: RegistryClient, name: string): Promise<BaseImage> {
  const ref = parseReference(name);
  const top = await client.getManifest(ref);
  const pinned = { ...ref, tag: undefined, digest: top.digest };
  const family = familyOf(top.mediaType);
  if (!isIndexType(top.mediaType)) {
    const image = await readImage(client, pinned, JSON.parse(top.bytes.toString('utf8')) as ImageManifest);
    if (image.config.os !== 'linux') throw new BaseImageUnusable(`base image ${formatReference(ref)} is ${image.config.os}; the ko host builds Linux images only`);
    const descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length };
    return { name, ref, digest: top.digest, family, isIndex: false, images: [{ ...image, descriptor, platform: platformOf(image.config) }] };
  }
  const index = JSON.parse(top.bytes.toString('utf8')) as ImageIndex;
  const images: BasePlatformImage[] = [];
  for (const entry of index.manifests) {
    if (isIndexType(entry.mediaType) || entry.platform?.os === 'unknown' || entry.platform?.architecture === 'unknown') continue;
    // ko lays Windows images out differently (Files/ko-app, Hives); only Linux is built here.
    if (entry.platform && entry.platform.os !== 'linux') continue;
    const child = await client.getManifest({ ...ref, tag: undefined, digest: entry.digest });
    const image = await readImage(client, pinned, JSON.parse(child.bytes.toString('utf8')) as ImageManifest);
    images.push({ ...image, descriptor: entry, platform: entry.platform ?? platformOf(image.config) });
  }
  if (images.length === 0) throw new BaseImageUnusable(`base image ${formatReference(ref)} is an index with no linux platform images`);
  return { name, ref, digest: top.digest, family, isIndex: true, images };
}

async function readImage(client: RegistryClient, ref: Reference, manifest: ImageManifest): Promise<Pick<BasePlatformImage, 'manifest' | 'config'>> {
  const config = JSON.parse((await client.blobBytes(ref, manifest.config)).toString('utf8')) as ImageConfig;
  return { manifest, config };
}

/** Copies the base's layers the store does not have yet, each verified as it streams. */
export async function copyBaseLayers(client: RegistryClient, store: ContentStore, base: BaseImage, manifest: ImageManifest): Promise<void> {
  for (const layer of manifest.layers) {
    if (await store.statBlob(layer.digest)) continue;
    const blob = await client.blob(base.ref, layer.digest, { size: layer.size });
    await store.putBlob(blob.stream, layer.digest, { sourceVerified: blob.verified });
  }
}
