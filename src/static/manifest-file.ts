import { MediaType, isIndexType } from '../oci/mediatypes.js';
import { sha256Digest } from '../oci/digest.js';
import type { StoredManifest } from '../oci/types.js';

/** Manifests larger than this are not images anyone pulls; they are skipped, never read whole into memory. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** A manifest found in the tree: its exact bytes, digest, media type, and what it refers to. */
export interface ManifestFile extends StoredManifest {
  /** The file it was read from. */
  path: string;
  /** Digests of the blobs it references directly (config and layers). */
  blobs: string[];
  /** Digests of the manifests an index lists. */
  children: string[];
}

interface ManifestShape {
  schemaVersion?: unknown;
  mediaType?: unknown;
  config?: { mediaType?: unknown; digest?: unknown };
  layers?: Array<{ digest?: unknown }>;
  manifests?: Array<{ digest?: unknown }>;
  fsLayers?: Array<{ blobSum?: unknown }>;
  signatures?: unknown;
}

/**
 * The media type of a manifest, from its `mediaType` field or, when that is absent (OCI
 * makes it optional, and `skopeo copy oci:… dir:` leaves it out), from its content.
 */
export function manifestMediaType(manifest: ManifestShape): string | undefined {
  if (typeof manifest.mediaType === 'string' && manifest.mediaType.length > 0) return manifest.mediaType;
  if (manifest.schemaVersion === 1) return manifest.signatures ? MediaType.dockerSchema1Signed : MediaType.dockerSchema1;
  if (manifest.schemaVersion !== 2) return undefined;
  if (Array.isArray(manifest.manifests)) return MediaType.ociIndex;
  if (manifest.config && typeof manifest.config === 'object') {
    return manifest.config.mediaType === MediaType.dockerConfig ? MediaType.dockerManifest : MediaType.ociManifest;
  }
  return undefined;
}

const digests = (list: Array<{ digest?: unknown }> | undefined): string[] =>
  Array.isArray(list) ? list.map((d) => d?.digest).filter((d): d is string => typeof d === 'string') : [];

/** Parses a manifest file's bytes; undefined when it is not a manifest kontain can serve. */
export function parseManifestFile(path: string, bytes: Buffer): ManifestFile | undefined {
  let manifest: ManifestShape;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as ManifestShape;
  } catch {
    return undefined;
  }
  if (!manifest || typeof manifest !== 'object') return undefined;
  const mediaType = manifestMediaType(manifest);
  if (!mediaType) return undefined;
  const digest = sha256Digest(bytes);
  if (isIndexType(mediaType)) return { path, bytes, digest, mediaType, blobs: [], children: digests(manifest.manifests) };
  const blobs = [...digests(manifest.config ? [manifest.config] : []), ...digests(manifest.layers)];
  if (Array.isArray(manifest.fsLayers)) {
    for (const layer of manifest.fsLayers) if (typeof layer?.blobSum === 'string') blobs.push(layer.blobSum);
  }
  return { path, bytes, digest, mediaType, blobs, children: [] };
}
