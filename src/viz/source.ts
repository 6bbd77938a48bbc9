import { LRUCache } from 'lru-cache';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import type { Descriptor, ImageIndex, ImageManifest, Platform, StoredManifest } from '../oci/types.js';
import { selectPlatform } from '../registry/platform.js';
import { formatReference, parseReference, type Reference } from '../remote/reference.js';
import { formatPlatform, humanSize } from './format.js';
import { MAX_VIZ_MANIFEST_BYTES, VizLimitError } from './limits.js';

export interface LayerInfo {
  digest: string;
  /** Compressed bytes, as the manifest says. */
  size: number;
}

/** One image as the graph needs it: its layers, bottom first. */
export interface ResolvedImage {
  /** The normalised reference: `docker.io/library/busybox:latest`. */
  reference: string;
  /** The image manifest drawn (the chosen platform's, for an index). */
  digest: string;
  /** The platform taken from an index; absent when the reference named a single image. */
  platform?: string;
  layers: LayerInfo[];
  /** Sum of the compressed layer sizes: what a pull downloads (config and manifest aside). */
  totalSize: number;
}

/** Where manifests come from: an upstream registry (RegistryClient), or this server itself. */
export interface ManifestReader {
  /** The descriptor a tag or digest points at. */
  resolve(ref: Reference): Promise<Descriptor>;
  /** A manifest by digest (`ref.digest` is set). */
  getManifest(ref: Reference): Promise<StoredManifest>;
}

/** What one viz request adds to a resolution. */
export interface ResolveContext {
  /** This server's own images, read in-process, for references that name this server. */
  own?: { names(registry: string): boolean; reader: ManifestReader };
  /** Aborted when the client leaves. */
  signal?: AbortSignal;
}

/** Where viz gets image layer lists from; the graph code knows nothing else about registries. */
export interface ImageGraphSource {
  /** Rejects with an Error whose message is fit to show the user; VizLimitError when an image is too large to draw. */
  resolve(reference: string, platform: Platform, context?: ResolveContext): Promise<ResolvedImage>;
}

/** Of a manifest, only what the graph reads: an index's entries or an image's layers. */
type ManifestSummary = { mediaType: string; entries: Descriptor[] } | { mediaType: string; layers: LayerInfo[] };

/**
 * The production source: upstream registries through the shared RegistryClient, and this
 * server's own images through `context.own`. A tag is resolved on every request (Docker Hub
 * does not count a HEAD as a pull); manifests are then read by digest, and those never
 * change, so what the graph needs of them is kept in a small LRU. Its key includes the
 * repository: a digest read from one repository (perhaps with credentials) says nothing
 * about what another repository may show.
 */
export class RegistryImageSource implements ImageGraphSource {
  private readonly manifests = new LRUCache<string, ManifestSummary>({
    maxSize: 16 * 1024 * 1024,
    sizeCalculation: (summary) => 200 + 150 * ('layers' in summary ? summary.layers.length : summary.entries.length),
  });

  constructor(private readonly upstream: ManifestReader) {}

  async resolve(text: string, wanted: Platform, context: ResolveContext = {}): Promise<ResolvedImage> {
    const ref = parseReference(text);
    const reader = context.own?.names(ref.registry) ? context.own.reader : this.upstream;
    const top = ref.digest ? { digest: ref.digest, size: undefined } : await reader.resolve(ref);
    let manifest = await this.summary(reader, ref, top);
    let platform: string | undefined;
    if ('entries' in manifest) {
      const child = selectPlatform(manifest.entries, wanted);
      if (!child) {
        const offered = manifest.entries.filter((m) => m.platform && m.platform.os !== 'unknown').map((m) => formatPlatform(m.platform!));
        throw new Error(`${formatReference(ref)} has no ${formatPlatform(wanted)} image (it has ${offered.join(', ') || 'no platform images'}); choose another platform`);
      }
      manifest = await this.summary(reader, ref, child);
      if (!('layers' in manifest)) throw new Error(`${formatReference(ref)}: the ${formatPlatform(wanted)} entry of its index is not an image manifest`);
      platform = child.platform ? formatPlatform(child.platform) : undefined;
    }
    const { layers } = manifest;
    return {
      reference: formatReference(ref),
      digest: manifest.digest,
      ...(platform ? { platform } : {}),
      layers,
      totalSize: layers.reduce((sum, l) => sum + l.size, 0),
    };
  }

  /** A manifest by digest, refused unread when its descriptor says it is too large, and refused when it is. */
  private async summary(reader: ManifestReader, ref: Reference, target: { digest: string; size?: number }): Promise<ManifestSummary & { digest: string }> {
    const key = `${ref.registry}/${ref.repository}@${target.digest}`;
    const cached = this.manifests.get(key);
    if (cached) return { ...cached, digest: target.digest };
    const tooLarge = (size: number) =>
      new VizLimitError(`${formatReference(ref)}: manifest ${target.digest} is ${humanSize(size)}; viz reads manifests of at most ${MAX_VIZ_MANIFEST_BYTES / 1024 / 1024} MiB`);
    if (target.size !== undefined && target.size > MAX_VIZ_MANIFEST_BYTES) throw tooLarge(target.size);
    const stored = await reader.getManifest({ registry: ref.registry, repository: ref.repository, digest: target.digest });
    if (stored.bytes.length > MAX_VIZ_MANIFEST_BYTES) throw tooLarge(stored.bytes.length);
    const summary = summarise(ref, stored);
    this.manifests.set(key, summary);
    return { ...summary, digest: target.digest };
  }
}

/** The OCI digest grammar: an algorithm, `:`, an encoded value. */
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** The entries of an index or the layers of an image, checked: upstream JSON is untrusted. */
function summarise(ref: Reference, stored: StoredManifest): ManifestSummary {
  const what = `${formatReference(ref)}: manifest ${stored.digest}`;
  let json: ImageManifest | ImageIndex;
  try {
    json = JSON.parse(stored.bytes.toString('utf8')) as ImageManifest | ImageIndex;
  } catch {
    throw new Error(`${what} is not JSON`);
  }
  if (isIndexType(stored.mediaType)) {
    const listed = (json as ImageIndex)?.manifests;
    const entries = (Array.isArray(listed) ? listed : []).filter((m): m is Descriptor => typeof m?.digest === 'string' && DIGEST.test(m.digest) && Number.isSafeInteger(m.size));
    return { mediaType: stored.mediaType, entries };
  }
  if (!isManifestType(stored.mediaType)) throw new Error(`${what} is ${stored.mediaType}, not an image or an index`);
  const listed = (json as ImageManifest)?.layers;
  if (!Array.isArray(listed)) throw new Error(`${what} has no layer list`);
  // What reaches the graph must be a digest and a size.
  const layers = listed.map((l, i) => {
    if (typeof l?.digest !== 'string' || !DIGEST.test(l.digest) || !Number.isSafeInteger(l.size) || l.size < 0) {
      throw new Error(`${what} has an invalid layer descriptor at position ${i}`);
    }
    return { digest: l.digest, size: l.size };
  });
  return { mediaType: stored.mediaType, layers };
}
