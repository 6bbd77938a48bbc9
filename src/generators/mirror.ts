import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import { ACTIONABLE_STATUS, RegistryError } from '../registry/errors.js';
import type { RegistryClient } from '../remote/client.js';
import { formatReference, type Reference } from '../remote/reference.js';
import type { ContentStore } from '../content/store.js';
import type { Link } from '../content/links.js';
import { UpstreamError } from '../remote/errors.js';
import { StoreCopy } from './store-copy.js';
import type { Descriptor, StoredManifest } from '../oci/types.js';
import type { ByteRange } from '../storage/backend.js';
import type { BlobSource, Generator, GeneratorContext, TagPage, TagRequest } from './generator.js';
import { isUpstreamOutage, upstreamFailure, upstreamReference } from './upstream.js';

export interface MirrorOptions {
  /** Serve a tag from the cache when the upstream is down (stale-if-error). */
  staleIfError: boolean;
}

/** Tags whose resolution and pointer write are remembered per process. */
const REMEMBERED_TAGS = 10_000;

/**
 * `mirror`: an upstream image, kept. A tag is resolved upstream with a HEAD (cheap, and
 * not counted by Docker Hub), and that answer is reused for `KONTAIN_MIRROR_TAG_TTL`
 * seconds (10) in this process, so a tag moved upstream is seen within that window while
 * repeated pulls cost no round trip; manifests are stored by digest; blobs
 * are fetched the first time a client asks, copied to the store at the upstream's speed
 * and streamed to that client at its own (see StoreCopy), and served from the store after
 * that. A digest is served under a repository only when the upstream gave it there (the
 * registry core checks store.links; this host links what its upstream repository gave).
 */
export class MirrorGenerator implements Generator {
  readonly service = 'mirror';
  private readonly store: ContentStore;
  private readonly domain: string;
  /** Blob fetches in progress, by upstream repository and digest: settles when the blob is stored. */
  private readonly fetching = new Map<string, Promise<void>>();
  /** Upstream answers for tags, by upstream reference, reused while fresh (KONTAIN_MIRROR_TAG_TTL). */
  private readonly resolved?: LRUCache<string, Descriptor>;
  /** The pointer each tag was last written (or found) with, so one that did not change is not rewritten. */
  private readonly pointers = new LRUCache<string, { digest: string; written: number }>({ max: REMEMBERED_TAGS });

  constructor(context: GeneratorContext, private readonly client: RegistryClient, private readonly options: MirrorOptions) {
    this.store = context.store;
    this.domain = context.config.domain;
    const ttlSeconds = context.config.mirrorTagTTLSeconds;
    if (ttlSeconds > 0) this.resolved = new LRUCache({ max: REMEMBERED_TAGS, ttl: ttlSeconds * 1000 });
  }

  private reference(repository: string, ref: { tag?: string; digest?: string }): Reference {
    return upstreamReference(this.service, this.domain, repository, ref);
  }

  async manifest(request: TagRequest): Promise<Descriptor> {
    const ref = this.reference(request.repository, { tag: request.tag });
    const key = formatReference(ref);
    const fresh = this.resolved?.get(key);
    // The manifest is checked too: garbage collection may have taken it since.
    if (fresh && (await this.store.getManifest(fresh.digest))) return fresh;
    try {
      const descriptor = await this.client.resolve(ref);
      if (!(await this.store.getManifest(descriptor.digest))) {
        const manifest = await this.client.getManifest({ ...ref, tag: undefined, digest: descriptor.digest });
        await this.store.putManifest(manifest.bytes, manifest.mediaType);
      }
      const result = { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size };
      await this.keepPointer(key, result);
      this.resolved?.set(key, result);
      return result;
    } catch (err) {
      if (this.options.staleIfError && isUpstreamOutage(err)) {
        const cached = await this.store.getPointer(this.service, key, { allowExpired: true });
        if (cached && (await this.store.getManifest(cached.descriptor.digest))) {
          request.log.warn({ upstream: key, err: (err as Error).message, digest: cached.descriptor.digest }, 'upstream failed: serving the cached tag (stale-if-error)');
          return cached.descriptor;
        }
      }
      throw upstreamFailure(err) ?? err;
    }
  }

  /**
   * The tag's pointer (its stale-if-error answer, and what keeps its image from garbage
   * collection) is rewritten only when the digest changed or half its lifetime
   * (KONTAIN_TTL) has passed; a pointer another instance wrote counts.
   */
  private async keepPointer(key: string, descriptor: Descriptor): Promise<void> {
    const refreshAfter = this.store.pointerTTLms / 2;
    let known = this.pointers.get(key);
    if (!known) {
      const stored = await this.store.getPointer(this.service, key);
      if (stored) known = { digest: stored.descriptor.digest, written: Date.parse(stored.created) };
    }
    if (known && known.digest === descriptor.digest && Date.now() - known.written < refreshAfter) {
      this.pointers.set(key, known);
      return;
    }
    await this.store.setPointer(this.service, key, descriptor);
    this.pointers.set(key, { digest: descriptor.digest, written: Date.now() });
  }

  async fetchManifest(repository: string, digest: string): Promise<StoredManifest | undefined> {
    const ref = this.reference(repository, { digest });
    try {
      const manifest = await this.client.getManifest(ref);
      await this.store.putManifest(manifest.bytes, manifest.mediaType);
      return manifest;
    } catch (err) {
      throw upstreamFailure(err) ?? err;
    }
  }

  async fetchBlob(repository: string, digest: string, log: Logger, linked?: Link): Promise<BlobSource | undefined> {
    const ref = this.reference(repository, { digest });
    // One fetch per upstream repository: another registry's (or repository's) answer for
    // the same digest, or its slowness, must never reach this request.
    const key = `${ref.registry}/${ref.repository}@${digest}`;
    const inFlight = this.fetching.get(key);
    if (inFlight) return this.afterStored(inFlight, digest);
    // Claim the key before the first await, so concurrent requests wait for this fetch.
    let settle!: { resolve: () => void; reject: (err: unknown) => void };
    this.track(key, new Promise<void>((resolve, reject) => (settle = { resolve, reject })));
    let upstream;
    try {
      // The manifest's size is the most that is taken: the first byte beyond it is refused.
      upstream = await this.client.blob(ref, digest, { size: linked?.size });
      if (upstream.size === undefined) {
        upstream.stream.destroy();
        throw new UpstreamError({
          registry: ref.registry,
          status: 200,
          code: 'SIZE_INVALID',
          message: `upstream ${ref.registry} sent blob ${digest} of ${ref.repository} without a length, and no manifest pulled through ${this.service}/${repository} gives its size`,
        });
      }
    } catch (err) {
      settle.reject(err);
      throw upstreamFailure(err, 'blob') ?? err;
    }
    const size = upstream.size;
    const copy = new StoreCopy(upstream.stream, size, digest, this.store, { verified: upstream.verified, log });
    // The upstream repository gave it: it may be served under this repository from now on.
    const linkedAfter = linked ? copy.stored : copy.stored.then(() => this.store.links.add(this.service, repository, [{ digest, size }]));
    linkedAfter.then(settle.resolve, settle.reject);
    // A body of unannounced length (chunked) could still break off or run long: the client
    // gets the stored copy, or a clear error, instead of a cut connection.
    if (upstream.contentLength === undefined) {
      copy.source().abandon!();
      return this.afterStored(linkedAfter, digest);
    }
    return copy.source();
  }

  private track(key: string, stored: Promise<void>): Promise<void> {
    const settled = stored.finally(() => this.fetching.delete(key));
    this.fetching.set(key, settled);
    settled.catch(() => undefined);
    return settled;
  }

  /** A source that waits for a fetch to land in the store, then reads it. */
  private async afterStored(stored: Promise<void>, digest: string): Promise<BlobSource> {
    try {
      await stored;
    } catch (err) {
      throw upstreamFailure(err, 'blob') ?? new RegistryError('UNAVAILABLE', `fetching blob ${digest} from upstream failed: ${(err as Error).message}`, { status: ACTIONABLE_STATUS.upstreamFailed });
    }
    const info = await this.store.statBlob(digest);
    if (!info) throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} could not be fetched`);
    return { size: info.size, open: (range?: ByteRange) => this.store.readBlob(digest, range) };
  }

  async tags(repository: string, page: { n?: number; last?: string }): Promise<TagPage> {
    const ref = this.reference(repository, {});
    try {
      const list = await this.client.tags(ref, page);
      return { tags: list.tags, next: list.next?.last };
    } catch (err) {
      throw upstreamFailure(err) ?? err;
    }
  }

  async referrers(repository: string, digest: string): Promise<{ bytes: Buffer; mediaType: string } | undefined> {
    const ref = this.reference(repository, { digest });
    try {
      const index = await this.client.referrers(ref, digest);
      return index && { bytes: Buffer.from(JSON.stringify(index)), mediaType: 'application/vnd.oci.image.index.v1+json' };
    } catch (err) {
      throw upstreamFailure(err) ?? err;
    }
  }
}
