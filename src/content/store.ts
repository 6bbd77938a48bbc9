import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { readObject, type ByteRange, type ObjectInfo, type StorageBackend } from '../storage/backend.js';
import { DigestingStream, digestHex, isSha256Digest, sha256Digest } from '../oci/digest.js';
import type { Descriptor, StoredManifest } from '../oci/types.js';
import { SingleFlight } from '../util/single-flight.js';
import { StoreLeases } from './lease.js';
import { RepositoryLinks } from './links.js';

/** A cache pointer: a name (service + key) for a manifest, with the time it was made. */
export interface Pointer {
  descriptor: Descriptor;
  created: string;
  /** The key it was written under (pointers written before keys were kept have none). */
  key?: string;
}

export interface BlobInfo {
  digest: string;
  size: number;
  created: Date;
}

export interface ContentStoreOptions {
  /** Bytes of manifests kept in memory. */
  manifestCacheBytes?: number;
  /** How long a pointer stays valid, in milliseconds. */
  pointerTTLms?: number;
  /** Told whether each `cached` lookup found a usable pointer (metrics). */
  onCacheLookup?: (service: string, result: 'hit' | 'miss') => void;
  /** How long a build's lease outlives its holder's last renewal (default 30 s). */
  leaseTTLms?: number;
}

/** Thrown when bytes that were written do not hash to the digest the writer expected. */
export class DigestMismatch extends Error {
  constructor(readonly expected: string, readonly actual: string) {
    super(`content digest ${actual} does not match the expected ${expected}`);
    this.name = 'DigestMismatch';
  }
}

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/**
 * Longest encoded key used as is in a pointer's object name. A file name holds 255 bytes,
 * and the fs backend adds `.<inode>.meta.json` for its sidecar: longer keys are hashed.
 */
const READABLE_KEY_BYTES = 150;
/** How much of a hashed key's encoding still begins its object name, for people listing the store. */
const HASHED_KEY_PREFIX_BYTES = 60;

/**
 * Content-addressed storage over any backend: blobs and manifests by digest, and named
 * pointers (cache keys) with a creation time. The only place that knows object names:
 *
 *   blobs/sha256/<hex>              layer and config bytes
 *   manifests/sha256/<hex>          manifest and index bytes, content type = media type
 *   pointers/<service>/<key>.json   a Pointer (key URI-encoded; a long key as
 *                                   <its first bytes>=<sha256 of the key>.json, the key itself inside)
 *   links/<service>/<repo hash>/<hex>  what a repository may serve by digest (links.ts)
 *   tmp/<uuid>                      uploads whose digest is not known yet
 *   leases/<hash>/<epoch>           which instance is doing a piece of work (lease.ts)
 */
export class ContentStore {
  private readonly manifests: LRUCache<string, StoredManifest>;
  private readonly builds = new SingleFlight<Descriptor>();
  readonly pointerTTLms: number;
  /** Which digests each repository of each service may serve. */
  readonly links: RepositoryLinks;
  private readonly onCacheLookup?: (service: string, result: 'hit' | 'miss') => void;
  /** Work done once across every instance sharing this store. */
  readonly leases: StoreLeases;

  constructor(readonly backend: StorageBackend, options: ContentStoreOptions = {}) {
    this.manifests = new LRUCache({
      maxSize: options.manifestCacheBytes ?? 64 * 1024 * 1024,
      sizeCalculation: (m) => m.bytes.length + 200,
    });
    this.pointerTTLms = options.pointerTTLms ?? 24 * 3600 * 1000;
    this.links = new RepositoryLinks(backend);
    this.onCacheLookup = options.onCacheLookup;
    this.leases = new StoreLeases(backend, { ttlMs: options.leaseTTLms ?? 30_000 });
  }

  static blobName(digest: string): string {
    return `blobs/sha256/${digestHex(digest)}`;
  }

  static manifestName(digest: string): string {
    return `manifests/sha256/${digestHex(digest)}`;
  }

  static pointerName(service: string, key: string): string {
    const encoded = encodeURIComponent(key);
    if (encoded.length <= READABLE_KEY_BYTES) return `pointers/${service}/${encoded}.json`;
    // `=` never appears in an encoded key, so a hashed name cannot be taken for a readable one.
    const readable = encoded.slice(0, HASHED_KEY_PREFIX_BYTES).replace(/%[0-9A-F]?$/, '');
    return `pointers/${service}/${readable}=${createHash('sha256').update(key).digest('hex')}.json`;
  }

  async statBlob(digest: string): Promise<BlobInfo | undefined> {
    if (!isSha256Digest(digest)) return undefined;
    const info = await this.backend.stat(ContentStore.blobName(digest));
    return info && { digest, size: info.size, created: info.created };
  }

  /** Streams a blob; rejects with ObjectNotFound when absent. */
  readBlob(digest: string, range?: ByteRange): Promise<Readable> {
    return this.backend.read(ContentStore.blobName(digest), range);
  }

  /** Where a client may fetch the blob directly, when the backend offers such a URL. */
  async blobURL(digest: string): Promise<string | undefined> {
    return this.backend.downloadURL?.(ContentStore.blobName(digest));
  }

  /**
   * Streams bytes into the store, hashing them on the way, then files them under their
   * digest. With `expected`, bytes that hash differently are discarded and the call
   * rejects with DigestMismatch: nothing unverified ever appears under a digest.
   */
  async putBlob(body: Readable, expected?: string, options: { sourceVerified?: boolean } = {}): Promise<{ digest: string; size: number }> {
    // A source that verifies its own digest (the registry client's blob streams error
    // instead of ending on a mismatch) goes to the backend as it is: hashing it a second
    // time, or passing it through one more stream, costs CPU on every chunk of a layer.
    const digesting = options.sourceVerified && expected ? undefined : new DigestingStream();
    const tmp = `tmp/${randomUUID()}`;
    // The source's failure is remembered here and rethrown below, whatever stage the
    // backend's own pipeline is at when it happens (it may already have detached).
    let failure: Error | undefined;
    digesting?.on('error', (err) => (failure ??= err));
    body.on('error', (err) => {
      failure ??= err;
      digesting?.destroy(err);
    });
    try {
      await this.backend.createIfAbsent(tmp, digesting ? body.pipe(digesting) : body);
    } catch (err) {
      throw failure ?? err;
    }
    if (failure) {
      await this.backend.delete(tmp);
      throw failure;
    }
    const digest = digesting ? digesting.digest : expected!;
    if (expected && expected !== digest) {
      await this.backend.delete(tmp);
      throw new DigestMismatch(expected, digest);
    }
    const name = ContentStore.blobName(digest);
    const moved = await this.backend.moveIfAbsent(tmp, name, { contentType: 'application/octet-stream', metadata: { digest } });
    if (!moved) await this.backend.touch(name);
    return { digest, size: digesting ? digesting.size : await this.storedSize(name) };
  }

  /** The size of an object just written (or found) under `name`. */
  private async storedSize(name: string): Promise<number> {
    const info = await this.backend.stat(name);
    if (!info) throw new Error(`${name} was stored but is gone`);
    return info.size;
  }

  /** Stores small bytes whose digest is computed here (configs, mostly). */
  async putBlobBytes(bytes: Buffer): Promise<{ digest: string; size: number }> {
    const digest = sha256Digest(bytes);
    const name = ContentStore.blobName(digest);
    const created = await this.backend.createIfAbsent(name, Readable.from([bytes]), { contentType: 'application/octet-stream', metadata: { digest } });
    if (!created) await this.backend.touch(name);
    return { digest, size: bytes.length };
  }

  /** Stores manifest bytes verbatim (never re-marshalled: the digest covers the bytes). */
  async putManifest(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    if (bytes.length > MAX_MANIFEST_BYTES) throw new Error(`manifest of ${bytes.length} bytes exceeds 4 MiB`);
    const digest = sha256Digest(bytes);
    const name = ContentStore.manifestName(digest);
    const created = await this.backend.createIfAbsent(name, Readable.from([bytes]), { contentType: mediaType, metadata: { digest } });
    // A rebuild that lands on existing content is a new use of it: garbage collection must
    // see it as young (see gc.ts: old objects are re-checked just before deletion).
    if (!created) await this.backend.touch(name);
    this.manifests.set(digest, { bytes, mediaType, digest });
    return { mediaType, digest, size: bytes.length };
  }

  /** A manifest by digest, from memory or read through from the store. */
  async getManifest(digest: string): Promise<StoredManifest | undefined> {
    if (!isSha256Digest(digest)) return undefined;
    const cached = this.manifests.get(digest);
    if (cached) return cached;
    const name = ContentStore.manifestName(digest);
    const info = await this.backend.stat(name);
    if (!info) return undefined;
    const bytes = await readObject(this.backend, name);
    if (!bytes || sha256Digest(bytes) !== digest) return undefined;
    const manifest = { bytes, mediaType: info.contentType, digest };
    this.manifests.set(digest, manifest);
    return manifest;
  }

  /** A live pointer; with allowExpired also one past its TTL (stale-if-error answers). */
  async getPointer(service: string, key: string, options: { allowExpired?: boolean } = {}): Promise<Pointer | undefined> {
    const name = ContentStore.pointerName(service, key);
    const bytes = await readObject(this.backend, name);
    if (!bytes) return undefined;
    const pointer = JSON.parse(bytes.toString('utf8')) as Pointer;
    if (pointer.key !== undefined && pointer.key !== key) return undefined;
    if (!options.allowExpired && Date.now() - Date.parse(pointer.created) > this.pointerTTLms) return undefined;
    return pointer;
  }

  /** Pointers are replaced, not created once: a newer build of the same key wins. */
  async setPointer(service: string, key: string, descriptor: Descriptor): Promise<void> {
    await this.deletePointer(service, key);
    await this.createPointer(service, key, descriptor);
  }

  /** Writes a pointer only if there is none under the key; true when this call wrote it. */
  async createPointer(service: string, key: string, descriptor: Descriptor): Promise<boolean> {
    const pointer: Pointer = { descriptor, created: new Date().toISOString(), key };
    return this.backend.createIfAbsent(ContentStore.pointerName(service, key), Readable.from([Buffer.from(JSON.stringify(pointer))]), {
      contentType: 'application/json',
    });
  }

  async deletePointer(service: string, key: string): Promise<void> {
    await this.backend.delete(ContentStore.pointerName(service, key));
  }

  /** The pointer's descriptor when it is live and its manifest is in the store. */
  private async usablePointer(service: string, key: string): Promise<Descriptor | undefined> {
    const hit = await this.getPointer(service, key);
    return hit && (await this.getManifest(hit.descriptor.digest)) ? hit.descriptor : undefined;
  }

  /**
   * The cached image for (service, key), building it once if there is none: concurrent
   * callers for the same key share one build in this process, and instances sharing the
   * store share one build through a lease (the others wait for its pointer). With
   * `signal` (the client's connection), a caller that leaves stops waiting, and the
   * build's own signal aborts once every caller in this process has left.
   */
  async cached(service: string, key: string, build: (signal: AbortSignal) => Promise<Descriptor>, signal?: AbortSignal): Promise<Descriptor> {
    const hit = await this.usablePointer(service, key);
    this.onCacheLookup?.(service, hit ? 'hit' : 'miss');
    if (hit) return hit;
    return this.builds.run(
      `${service}\0${key}`,
      (buildSignal) =>
        this.leases.once(
          `pointer:${service}\0${key}`,
          {
            done: () => this.usablePointer(service, key),
            work: async () => {
              const descriptor = await build(buildSignal);
              await this.setPointer(service, key, descriptor);
              return descriptor;
            },
          },
          buildSignal,
        ),
      signal,
    );
  }

  /** Deletes a blob nothing else can refer to (the layers of a random image whose client left). */
  async deleteBlob(digest: string): Promise<void> {
    await this.backend.delete(ContentStore.blobName(digest));
  }

  /** Deletes a manifest (garbage collection), also from memory so it is not served on. */
  async deleteManifest(digest: string): Promise<void> {
    await this.backend.delete(ContentStore.manifestName(digest));
    this.manifests.delete(digest);
  }

  list(prefix: string): AsyncIterable<{ name: string; info: ObjectInfo }> {
    return this.backend.list(prefix);
  }
}

