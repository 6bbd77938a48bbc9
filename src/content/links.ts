import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { digestHex, isSha256Digest } from '../oci/digest.js';
import { isIndexType } from '../oci/mediatypes.js';
import type { StoredManifest } from '../oci/types.js';
import { readObject, type StorageBackend } from '../storage/backend.js';

/** Content a repository may serve by digest, with the size its referrer gave. */
export interface Link {
  digest: string;
  size: number;
}

/** Link names remembered in memory (about 200 bytes each), so a warm pull reads none. */
const MEMORY_ENTRIES = 100_000;
/** Remembered links are written again after this long, so a gc'd one comes back. */
const MEMORY_TTL_MS = 10 * 60 * 1000;

/**
 * Which blobs and manifests each repository of each service may serve by digest, as a
 * registry with access control does: a digest is served under a repository only when an
 * image served there references it (or, for mirror, its upstream repository gave it).
 * Without this, content fetched with the operator's credentials from a private upstream
 * could be read by digest under any repository of any host.
 *
 *   links/<service>/<sha256 hex of repository>/<digest hex>   {"size": N}
 *
 * The repository is hashed so any valid name gives a short object name. Links do not keep
 * content alive (pointers do); garbage collection deletes a link whose content is gone.
 */
export class RepositoryLinks {
  static readonly PREFIX = 'links/';
  // Bounded by maxSize (one per entry), not max: with max, lru-cache allocates all its
  // slots up front, tens of milliseconds of every cold start for empty caches.
  /** By service, repository and digest (not the object name: no hash per lookup). */
  private readonly known = new LRUCache<string, Link>({ maxSize: MEMORY_ENTRIES, sizeCalculation: () => 1, ttl: MEMORY_TTL_MS });
  /** Manifests whose references were all linked lately: served again, they are not parsed again. */
  private readonly linkedManifests = new LRUCache<string, true>({ maxSize: MEMORY_ENTRIES, sizeCalculation: () => 1, ttl: MEMORY_TTL_MS });

  constructor(private readonly backend: StorageBackend) {}

  static linkName(service: string, repository: string, digest: string): string {
    const repo = createHash('sha256').update(repository).digest('hex');
    return `${RepositoryLinks.PREFIX}${service}/${repo}/${digestHex(digest)}`;
  }

  /** The digest a link object stands for, or undefined for a name that is not a link. */
  static digestOf(name: string): string | undefined {
    const m = /^links\/[^/]+\/[0-9a-f]{64}\/([0-9a-f]{64})$/.exec(name);
    return m ? `sha256:${m[1]}` : undefined;
  }

  /** Records that `repository` of `service` may serve these digests. */
  async add(service: string, repository: string, links: Link[]): Promise<void> {
    await Promise.all(
      links
        .filter((link) => isSha256Digest(link.digest))
        .map(async (link) => {
          const key = memoryKey(service, repository, link.digest);
          if (this.known.has(key)) return;
          const body = Readable.from([Buffer.from(JSON.stringify({ size: link.size }))]);
          await this.backend.createIfAbsent(RepositoryLinks.linkName(service, repository, link.digest), body, { contentType: 'application/json' });
          this.known.set(key, link);
        }),
    );
  }

  /** The link of a digest in a repository, or undefined when nothing served there references it. */
  async find(service: string, repository: string, digest: string): Promise<Link | undefined> {
    if (!isSha256Digest(digest)) return undefined;
    const key = memoryKey(service, repository, digest);
    const cached = this.known.get(key);
    if (cached) return cached;
    const bytes = await readObject(this.backend, RepositoryLinks.linkName(service, repository, digest));
    if (!bytes) return undefined;
    let size: unknown;
    try {
      size = (JSON.parse(bytes.toString('utf8')) as { size?: unknown }).size;
    } catch {
      return undefined;
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
    const link = { digest, size };
    this.known.set(key, link);
    return link;
  }

  /** Links the manifest and what it references directly (child manifests, config, layers). */
  async addManifest(service: string, repository: string, manifest: StoredManifest): Promise<void> {
    const key = memoryKey(service, repository, manifest.digest);
    if (this.linkedManifests.has(key)) return;
    await this.add(service, repository, [{ digest: manifest.digest, size: manifest.bytes.length }, ...referencedBy(manifest)]);
    this.linkedManifests.set(key, true);
  }
}

const memoryKey = (service: string, repository: string, digest: string) => `${service}\0${repository}\0${digest}`;

/** The descriptors a manifest or index names; malformed entries are left out. */
export function referencedBy(manifest: StoredManifest): Link[] {
  let parsed: { manifests?: unknown; config?: unknown; layers?: unknown };
  try {
    parsed = JSON.parse(manifest.bytes.toString('utf8')) as typeof parsed;
  } catch {
    return [];
  }
  if (!parsed || typeof parsed !== 'object') return [];
  const entries: unknown[] = isIndexType(manifest.mediaType) || Array.isArray(parsed.manifests)
    ? (Array.isArray(parsed.manifests) ? parsed.manifests : [])
    : [parsed.config, ...(Array.isArray(parsed.layers) ? parsed.layers : [])];
  const links: Link[] = [];
  for (const entry of entries) {
    const { digest, size } = (entry ?? {}) as { digest?: unknown; size?: unknown };
    if (typeof digest === 'string' && isSha256Digest(digest) && typeof size === 'number' && Number.isSafeInteger(size) && size >= 0) {
      links.push({ digest, size });
    }
  }
  return links;
}
