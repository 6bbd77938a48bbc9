import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.js';
import type { Link } from '../content/links.js';
import type { AcceptedTypes } from '../registry/accept.js';
import type { Reference } from '../registry/names.js';
import type { Descriptor, StoredManifest } from '../oci/types.js';
import type { ByteRange } from '../storage/backend.js';
import type { Config } from '../config.js';
import type { TaskQueue } from '../tasks/queue.js';
import type { BuildFacility } from '../builds/facility.js';

/** What a generator is asked for when a client requests a manifest by tag. */
export interface TagRequest {
  /** The repository with the service stripped: `random.kontain.me/foo` and `localhost/random/foo` both give `foo`. */
  repository: string;
  tag: string;
  accept: AcceptedTypes;
  log: Logger;
  /** `scheme://host` the client used, for URLs in messages (a build's log). */
  baseUrl?: string;
  /**
   * Aborts when the client goes away before its answer. Optional: a generator that
   * honours it stops its work and removes what it wrote for this request alone.
   */
  signal?: AbortSignal;
}

/** A blob a generator can produce on demand (mirror fetches it from upstream). */
export interface BlobSource {
  size: number;
  /** The bytes, or a byte range of them; rejects when the content cannot be had. */
  open(range?: ByteRange): Promise<Readable>;
  /** Called instead of open when the bytes are not wanted (HEAD, errors), so a fetch can finish on its own. */
  abandon?(): void;
}

export interface TagPage {
  tags: string[];
  /** The `last` value for the next page, when there is one. */
  next?: string;
}

/** A manifest a host holds ready (Generator.manifestNow), and how long the host vouches for it. */
export interface ReadyManifest {
  manifest: StoredManifest;
  /**
   * Until when (a performance.now() time) the host would give the same answer without
   * looking again: the fast entry may repeat it until then without asking.
   */
  freshUntil: number;
}

/**
 * One host's image maker. It returns descriptors of content it has put in the store (or,
 * for hosts that fetch on demand, can produce through the optional methods); it never
 * writes HTTP.
 */
export interface Generator {
  readonly service: string;
  /**
   * The manifest (or index) for a tag: the descriptor of stored content, or the manifest
   * itself from a host that serves content it holds; throws RegistryError for tags it
   * cannot satisfy.
   */
  manifest(request: TagRequest): Promise<Descriptor | StoredManifest>;
  /**
   * True for hosts whose content is never in the store (static): the router asks only
   * fetchManifest and fetchBlob, so content is served under the names the host says hold
   * it and nowhere else.
   */
  readonly storeless?: boolean;
  /**
   * A manifest by digest that is not in the store yet, or not linked to this repository
   * (the generator vouches that the repository has it, e.g. by asking the upstream).
   */
  fetchManifest?(repository: string, digest: string, log: Logger): Promise<StoredManifest | undefined>;
  /**
   * What manifest or fetchManifest would answer for a tag or digest, when the host holds
   * it ready in memory and current (no I/O to wait for); undefined to ask them instead.
   * Asked of storeless hosts by the fast entry, so a repeated pull is answered at once.
   */
  manifestNow?(repository: string, reference: Reference): ReadyManifest | undefined;
  /**
   * A blob that is not in the store yet, or not yet linked to this repository. `linked` is
   * set when an image served under the repository references the blob, with its size: the
   * most bytes that may be taken for it. Without it the generator must check on its own
   * that the repository has the blob, and link it (store.links) once it does.
   */
  fetchBlob?(repository: string, digest: string, log: Logger, linked?: Link): Promise<BlobSource | undefined>;
  tags?(repository: string, page: { n?: number; last?: string }, log: Logger): Promise<TagPage>;
  /** The referrers index bytes for a digest, when the generator knows more than "none". */
  referrers?(repository: string, digest: string, log: Logger): Promise<{ bytes: Buffer; mediaType: string } | undefined>;
}

/**
 * What the landing page says about a host. Kept apart from the generator: a host's module
 * is imported on its first request (generators/lazy.ts), the landing page needs this before.
 */
export interface HostDescription {
  /** One sentence for the landing page: what pulling from this host gives you. */
  readonly summary: string;
  /** `repository:tag` examples for paste-able pull commands. */
  readonly examples: string[];
  /** A web page the host serves (viz), which the landing page links to. */
  readonly pageURL?: string;
}

/** A host as the app serves it: its generator and its description. */
export type Host = Generator & HostDescription;

/** What every generator is constructed with. */
export interface GeneratorContext {
  store: ContentStore;
  config: Config;
  log: Logger;
  /** Delayed work (the wait host); generators register their task handlers on it. */
  tasks?: TaskQueue;
  /** Slow work answered while it runs (builds); made from store and tasks when absent. */
  builds?: BuildFacility;
}
