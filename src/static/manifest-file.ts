import { validateHeaderValue } from 'node:http';
import { MediaType, isIndexType } from '../oci/mediatypes.js';
import { sha256Digest } from '../oci/digest.js';
import type { StoredManifest } from '../oci/types.js';
import { TreeProblem } from './confined.js';

/** Manifests larger than this are not images anyone pulls; they are skipped, never read whole into memory. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** A manifest found in the tree: its exact bytes, digest, media type, and what it refers to. */
export interface ManifestFile extends StoredManifest {
  /** The file it was read from. */
  path: string;
  /** Digests of the blobs it references directly (config and layers). */
  blobs: string[];
  /** The size each blob's descriptor states, where it states one (schema 1 does not). */
  blobSizes: Map<string, number>;
  /** Digests of the manifests an index lists. */
  children: string[];
}

interface ManifestShape {
  schemaVersion?: unknown;
  mediaType?: unknown;
  config?: { mediaType?: unknown; digest?: unknown; size?: unknown };
  layers?: Array<{ digest?: unknown; size?: unknown }>;
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

/**
 * Parses a manifest file's bytes; TreeProblem saying why when it is not a manifest kontain
 * can serve (`file` names it in the message, relative to the root).
 */
export function checkManifestFile(path: string, bytes: Buffer, file = path): ManifestFile {
  let manifest: ManifestShape;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as ManifestShape;
  } catch (err) {
    throw new TreeProblem(`${file} is not valid JSON (${(err as Error).message})`);
  }
  if (!manifest || typeof manifest !== 'object' || Array.isArray(manifest)) throw new TreeProblem(`${file} is not a JSON object`);
  const mediaType = manifestMediaType(manifest);
  if (!mediaType) throw new TreeProblem(`${file} is not an image manifest or index (no schemaVersion 2 with config or manifests, nor schema 1)`);
  try {
    validateHeaderValue('Content-Type', mediaType);
  } catch {
    throw new TreeProblem(`${file} has a mediaType that cannot be sent as a Content-Type (${JSON.stringify(mediaType)})`);
  }
  const digest = sha256Digest(bytes);
  if (isIndexType(mediaType)) return { path, bytes, digest, mediaType, blobs: [], blobSizes: new Map(), children: digests(manifest.manifests) };
  const described = [...(manifest.config ? [manifest.config] : []), ...(Array.isArray(manifest.layers) ? manifest.layers : [])];
  const blobs = digests(described);
  const blobSizes = new Map<string, number>();
  for (const d of described) if (typeof d?.digest === 'string' && Number.isSafeInteger(d.size) && (d.size as number) >= 0) blobSizes.set(d.digest, d.size as number);
  if (Array.isArray(manifest.fsLayers)) {
    for (const layer of manifest.fsLayers) if (typeof layer?.blobSum === 'string') blobs.push(layer.blobSum);
  }
  return { path, bytes, digest, mediaType, blobs, blobSizes, children: [] };
}

/** Parses a manifest file's bytes; undefined when it is not a manifest kontain can serve. */
export function parseManifestFile(path: string, bytes: Buffer): ManifestFile | undefined {
  try {
    return checkManifestFile(path, bytes);
  } catch (err) {
    if (err instanceof TreeProblem) return undefined;
    throw err;
  }
}
