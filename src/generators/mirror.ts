import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.js';
import type { RegistryClient } from '../remote/client.js';
import { formatReference, type Reference } from '../remote/reference.js';
import type { ContentStore } from '../content/store.js';
import type { Descriptor, StoredManifest } from '../oci/types.js';
import type { ByteRange } from '../storage/backend.js';
import type { BlobSource, Generator, GeneratorContext, TagPage, TagRequest } from './generator.js';
import { isUpstreamOutage, upstreamFailure, upstreamReference } from './upstream.js';

export interface MirrorOptions {
  /** Serve a tag from the cache when the upstream is down (stale-if-error). */
  staleIfError: boolean;
}

/**
 * `mirror`: an upstream image, kept. Tags are re-resolved upstream with a HEAD on every
 * request (cheap, and not counted by Docker Hub); manifests are stored by digest; blobs
 * are fetched the first time a client asks, streamed to it while being written to the
 * store, and served from the store after that.
 */
export class MirrorGenerator implements Generator {
  readonly service = 'mirror';
  readonly summary = 'An upstream image, pulled through and kept: busybox means docker.io/library/busybox; other registries by host name.';
  readonly examples = ['mirror/busybox', 'mirror/ghcr.io/homebrew/core/hello:latest'];
  private readonly store: ContentStore;
  private readonly domain: string;
  /** Blob fetches in progress, by digest: the promise settles when the blob is stored. */
  private readonly fetching = new Map<string, Promise<void>>();

  constructor(context: GeneratorContext, private readonly client: RegistryClient, private readonly options: MirrorOptions) {
    this.store = context.store;
    this.domain = context.config.domain;
  }

  private reference(repository: string, ref: { tag?: string; digest?: string }): Reference {
    return upstreamReference(this.service, this.domain, repository, ref);
  }

  async manifest(request: TagRequest): Promise<Descriptor> {
    const ref = this.reference(request.repository, { tag: request.tag });
    const key = formatReference(ref);
    try {
      const descriptor = await this.client.resolve(ref);
      if (!(await this.store.getManifest(descriptor.digest))) {
        const manifest = await this.client.getManifest({ ...ref, tag: undefined, digest: descriptor.digest });
        await this.store.putManifest(manifest.bytes, manifest.mediaType);
      }
      const result = { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size };
      await this.store.setPointer(this.service, key, result);
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

  async fetchBlob(repository: string, digest: string, log: Logger): Promise<BlobSource | undefined> {
    const ref = this.reference(repository, { digest });
    const inFlight = this.fetching.get(digest);
    if (inFlight) return this.afterStored(inFlight, digest);
    // Claim the digest before the first await, so concurrent requests wait for this fetch.
    let settle!: { resolve: () => void; reject: (err: unknown) => void };
    this.track(digest, new Promise<void>((resolve, reject) => (settle = { resolve, reject })));
    let upstream;
    try {
      upstream = await this.client.blob(ref, digest);
    } catch (err) {
      settle.reject(err);
      throw upstreamFailure(err, 'blob') ?? err;
    }
    if (upstream.size === undefined) {
      // Without a length the first client cannot be streamed to: store first, then serve.
      const stored = this.store.putBlob(upstream.stream, digest).then(() => undefined);
      stored.then(settle.resolve, settle.reject);
      return this.afterStored(stored, digest);
    }
    return this.teeToStore(upstream.stream, upstream.size, digest, upstream.verified, log, settle);
  }

  /**
   * Streams the upstream body into the store and, when a client opens it, to that client
   * too. The store write goes on if the client leaves; other clients asking meanwhile wait
   * for the stored copy, so there is one upstream fetch however many ask at once.
   */
  private teeToStore(
    body: Readable,
    size: number,
    digest: string,
    verified: boolean,
    log: Logger,
    settle: { resolve: () => void; reject: (err: unknown) => void },
  ): BlobSource {
    const toStore = new PassThrough({ highWaterMark: 1 << 20 });
    let toClient: PassThrough | undefined;
    const stored = this.store.putBlob(toStore, digest, { sourceVerified: verified }).then(() => undefined);
    stored.then(settle.resolve, settle.reject);
    let waiting = 0;
    const resume = () => {
      if (--waiting === 0) body.resume();
    };
    const pump = () => {
      body.on('data', (chunk: Buffer) => {
        const storeReady = toStore.write(chunk);
        const client = toClient && !toClient.destroyed ? toClient : undefined;
        const clientReady = client ? client.write(chunk) : true;
        if (storeReady && clientReady) return;
        body.pause();
        waiting = (storeReady ? 0 : 1) + (clientReady ? 0 : 1);
        if (!storeReady) toStore.once('drain', resume);
        if (!clientReady) client!.once('drain', resume);
      });
      body.once('end', () => {
        toStore.end();
        toClient?.end();
      });
      body.on('error', (err) => {
        toStore.destroy(err);
        toClient?.destroy(err);
      });
    };
    let started = false;
    const start = () => {
      if (!started) {
        started = true;
        pump();
      }
    };
    stored.catch((err: unknown) => log.warn({ err, digest }, 'mirrored blob was not stored'));
    return {
      size,
      open: async (range?: ByteRange) => {
        if (range || started) {
          start();
          await stored;
          return this.store.readBlob(digest, range);
        }
        toClient = new PassThrough({ highWaterMark: 1 << 20 });
        // A client that goes away must not hold up the store.
        toClient.once('close', () => {
          if (waiting > 0) toClient!.emit('drain');
        });
        start();
        return toClient;
      },
      abandon: () => start(),
    };
  }

  private track(digest: string, stored: Promise<void>): Promise<void> {
    const settled = stored.finally(() => this.fetching.delete(digest));
    this.fetching.set(digest, settled);
    settled.catch(() => undefined);
    return settled;
  }

  /** A source that waits for another request's fetch to land in the store, then reads it. */
  private async afterStored(stored: Promise<void>, digest: string): Promise<BlobSource> {
    try {
      await stored;
    } catch (err) {
      throw upstreamFailure(err, 'blob') ?? new RegistryError('UNAVAILABLE', `fetching blob ${digest} from upstream failed: ${(err as Error).message}`, { status: 502 });
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
