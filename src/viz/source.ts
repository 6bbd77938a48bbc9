import { LRUCache } from 'lru-cache';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import type { ImageIndex, ImageManifest, Platform } from '../oci/types.js';
import { selectPlatform } from '../registry/platform.js';
import type { RegistryClient } from '../remote/client.js';
import { formatReference, parseReference, type Reference } from '../remote/reference.js';
import { formatPlatform } from './format.js';

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

/** Where viz gets image layer lists from; the graph code knows nothing else about registries. */
export interface ImageGraphSource {
  /** Rejects with an Error whose message is fit to show the user. */
  resolve(reference: string, platform: Platform): Promise<ResolvedImage>;
}

type ParsedManifest = { mediaType: string; json: ImageManifest | ImageIndex };

/**
 * The production source: upstream registries through the shared RegistryClient. A tag is
 * resolved with a HEAD on every request (Docker Hub does not count it as a pull); manifests
 * are then fetched by digest, and those never change, so they are kept in a small LRU.
 */
export class RegistryImageSource implements ImageGraphSource {
  private readonly manifests = new LRUCache<string, ParsedManifest>({ max: 1000 });

  constructor(private readonly client: Pick<RegistryClient, 'resolve' | 'getManifest'>) {}

  async resolve(text: string, wanted: Platform): Promise<ResolvedImage> {
    const ref = parseReference(text);
    const top = ref.digest ? { digest: ref.digest } : await this.client.resolve(ref);
    let manifest = await this.manifest(ref, top.digest);
    let platform: string | undefined;
    if (isIndexType(manifest.mediaType)) {
      const listed = (manifest.json as ImageIndex).manifests;
      const entries = Array.isArray(listed) ? listed : [];
      const child = selectPlatform(entries, wanted);
      if (!child) {
        const offered = entries.filter((m) => m.platform && m.platform.os !== 'unknown').map((m) => formatPlatform(m.platform!));
        throw new Error(`${formatReference(ref)} has no ${formatPlatform(wanted)} image (it has ${offered.join(', ') || 'no platform images'}); choose another platform`);
      }
      manifest = await this.manifest(ref, child.digest);
      if (!isManifestType(manifest.mediaType)) throw new Error(`${formatReference(ref)}: the ${formatPlatform(wanted)} entry of its index is not an image manifest`);
      platform = child.platform ? formatPlatform(child.platform) : undefined;
    }
    const listed = (manifest.json as ImageManifest).layers;
    if (!Array.isArray(listed)) throw new Error(`${formatReference(ref)}: manifest ${manifest.digest} has no layer list`);
    // Upstream JSON is untrusted: what reaches the graph must be a digest and a size.
    const layers = listed.map((l, i) => {
      if (typeof l?.digest !== 'string' || !/^[a-z0-9+._-]+:[a-zA-Z0-9=_-]+$/.test(l.digest) || !Number.isSafeInteger(l.size) || l.size < 0) {
        throw new Error(`${formatReference(ref)}: manifest ${manifest.digest} has an invalid layer descriptor at position ${i}`);
      }
      return { digest: l.digest, size: l.size };
    });
    return {
      reference: formatReference(ref),
      digest: manifest.digest,
      ...(platform ? { platform } : {}),
      layers,
      totalSize: layers.reduce((sum, l) => sum + l.size, 0),
    };
  }

  private async manifest(ref: Reference, digest: string): Promise<ParsedManifest & { digest: string }> {
    const cached = this.manifests.get(digest);
    if (cached) return { ...cached, digest };
    const stored = await this.client.getManifest({ registry: ref.registry, repository: ref.repository, digest });
    const json = JSON.parse(stored.bytes.toString('utf8')) as ImageManifest | ImageIndex;
    const parsed = { mediaType: stored.mediaType, json };
    this.manifests.set(digest, parsed);
    return { ...parsed, digest };
  }
}
