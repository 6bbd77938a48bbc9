import { createGunzip, type ZlibOptions } from 'node:zlib';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { ACTIONABLE_STATUS, RegistryError } from '../registry/errors.js';
import type { RegistryClient } from '../remote/client.js';
import { formatReference, type Reference } from '../remote/reference.js';
import type { ContentStore } from '../content/store.js';
import { MediaType, familyOf, isIndexType, type FormatFamily } from '../oci/mediatypes.js';
import { writeIndex } from '../oci/image.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../oci/types.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import { LRUCache } from 'lru-cache';
import { BudgetExceeded, ContentBudget, type ContentLimits } from '../oci/content-budget.js';
import { FlattenError } from '../oci/flatten.js';
import { TarFormatError } from '../oci/estargz-tar.js';
import { isUpstreamOutage, upstreamFailure, upstreamReference } from './upstream.js';

/**
 * gzip level of every layer a derived host writes. A client is waiting for the pull, so
 * speed wins over a few percent of size: level 1, as go-containerregistry writes layers.
 */
export const DERIVED_GZIP_LEVEL = 1;

/** One upstream image, as a derived host's transform sees it. */
export interface UpstreamImage {
  ref: Reference;
  manifest: ImageManifest;
  family: FormatFamily;
  config: ImageConfig;
  /**
   * The layer's uncompressed tar, streamed from upstream and verified as it arrives,
   * counted against the image's budget and destroyed when `signal` aborts.
   */
  openLayer(layer: Descriptor): Promise<Readable>;
  /** What the transform's readers count each tar entry against. */
  budget: ContentBudget;
  /** Aborts when no client waits for this image any more. */
  signal: AbortSignal;
}

/** Refusals that come out the same however often they are tried are remembered this long. */
const FAILURE_TTL_MS = 3600 * 1000;

/**
 * The shared part of hosts that make a new image from an upstream one (flatten, estargz):
 * resolve the tag upstream with a HEAD, and build once per upstream digest; an index is
 * transformed image by image into a new index with the same platforms.
 *
 * Each image's layers are read within a budget (`KONTAIN_DERIVED_MAX_BYTES` uncompressed,
 * `KONTAIN_DERIVED_MAX_ENTRIES` tar entries) so that neither a gzip bomb nor a layer of
 * millions of files can fill the disk or the heap. Upstream content that cannot be
 * transformed (malformed manifests, broken tars, impossible links) is the upstream's
 * fault: a 502 saying which image and why. Both kinds of refusal are remembered per
 * upstream digest, so a retry does not do the work again.
 */
export abstract class DerivedGenerator implements Generator {
  abstract readonly service: string;
  protected readonly store: ContentStore;
  private readonly domain: string;
  private readonly limits: ContentLimits;
  private readonly failures = new LRUCache<string, RegistryError>({ max: 1000, ttl: FAILURE_TTL_MS });
  private readonly staleIfError: boolean;

  constructor(context: GeneratorContext, protected readonly client: RegistryClient) {
    this.store = context.store;
    this.domain = context.config.domain;
    this.limits = { maxBytes: context.config.derivedMaxBytes, maxEntries: context.config.derivedMaxEntries };
    this.staleIfError = context.config.mirrorStaleIfError;
  }

  /** Makes the derived image of one upstream image; returns its manifest descriptor. */
  protected abstract transform(image: UpstreamImage, log: Logger): Promise<Descriptor>;

  /** The media type family of the index written over transformed images. */
  protected abstract indexFamily(upstream: FormatFamily): FormatFamily;

  /**
   * Builds are cached by upstream digest; the tag's last answer is kept too (a pointer
   * keyed by the upstream reference), so that a tag built before is still served while
   * the upstream is down (stale-if-error, as mirror does).
   */
  async manifest(request: TagRequest): Promise<Descriptor> {
    const ref = upstreamReference(this.service, this.domain, request.repository, { tag: request.tag });
    const tagKey = formatReference(ref);
    let digest: string | undefined;
    try {
      digest = (await this.client.resolve(ref)).digest;
      const failed = this.failures.get(digest);
      if (failed) throw failed;
      const top = digest;
      const built = await this.store.cached(this.service, top, (signal) => this.buildUnlessAbandoned(ref, top, request.log, signal), request.signal);
      if (this.staleIfError && (await this.store.getPointer(this.service, tagKey))?.descriptor.digest !== built.digest) {
        await this.store.setPointer(this.service, tagKey, built);
      }
      return built;
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      if (this.staleIfError && isUpstreamOutage(err)) {
        const cached = await this.store.getPointer(this.service, tagKey, { allowExpired: true });
        if (cached && (await this.store.getManifest(cached.descriptor.digest))) {
          request.log.warn({ upstream: tagKey, err: (err as Error).message, digest: cached.descriptor.digest }, `upstream failed: serving the last ${this.service} of this tag (stale-if-error)`);
          return cached.descriptor;
        }
      }
      const refusal = this.refusal(err, ref, digest);
      if (refusal && digest) this.failures.set(digest, refusal);
      throw upstreamFailure(err) ?? refusal ?? err;
    }
  }

  /** The client error for content that can never be transformed; undefined for other failures. */
  private refusal(err: unknown, ref: Reference, digest: string | undefined): RegistryError | undefined {
    const upstream = `${formatReference({ ...ref, tag: undefined, digest: undefined })}${digest ? `@${digest}` : ''}`;
    const budget = findCause(err, (e): e is BudgetExceeded => e instanceof BudgetExceeded);
    if (budget) {
      const variable = budget.limit === 'maxBytes' ? 'KONTAIN_DERIVED_MAX_BYTES' : 'KONTAIN_DERIVED_MAX_ENTRIES';
      return new RegistryError('MANIFEST_UNKNOWN', `${this.service} refuses ${upstream}: ${budget.message} (the limit is ${variable})`, { status: 422 });
    }
    const bad = findCause(err, isBadContent);
    if (bad) return new RegistryError('UNAVAILABLE', `${this.service} cannot use ${upstream}: the upstream sent bad content: ${bad.message}`, { status: ACTIONABLE_STATUS.upstreamFailed });
    return undefined;
  }

  /** A build whose clients have all gone stops: its spool and partial upload are removed as it unwinds. */
  private async buildUnlessAbandoned(ref: Reference, digest: string, log: Logger, signal: AbortSignal): Promise<Descriptor> {
    try {
      return await this.build(ref, digest, log, signal);
    } catch (err) {
      if (signal.aborted) log.info({ service: this.service, upstream: formatReference(ref), upstreamDigest: digest }, `${this.service}: no client waits any more; build stopped`);
      throw err;
    }
  }

  private async build(ref: Reference, digest: string, log: Logger, signal: AbortSignal): Promise<Descriptor> {
    const started = Date.now();
    const top = await this.client.getManifest({ ...ref, tag: undefined, digest });
    let result: Descriptor;
    if (isIndexType(top.mediaType)) {
      const index = parseIndex(top.bytes, digest);
      const children: Descriptor[] = [];
      for (const child of index.manifests) {
        // Attestation manifests (platform unknown/unknown) describe the original, not ours.
        if (child.platform?.os === 'unknown' || isIndexType(child.mediaType)) continue;
        const built = await this.transformDigest(ref, child.digest, log, signal);
        children.push({ mediaType: built.mediaType, digest: built.digest, size: built.size, ...(child.platform ? { platform: child.platform } : {}) });
      }
      if (children.length === 0) throw new RegistryError('MANIFEST_UNKNOWN', `${formatReference(ref)} is an index with no platform images to ${this.service}`);
      result = await writeIndex(this.store, this.indexFamily(familyOf(top.mediaType)), children);
    } else {
      result = await this.transformDigest(ref, digest, log, signal);
    }
    log.info({ service: this.service, upstream: formatReference(ref), upstreamDigest: digest, digest: result.digest, ms: Date.now() - started }, `${this.service} built`);
    return { mediaType: result.mediaType, digest: result.digest, size: result.size };
  }

  private async transformDigest(ref: Reference, digest: string, log: Logger, signal: AbortSignal): Promise<Descriptor> {
    signal.throwIfAborted();
    const fetched = await this.client.getManifest({ ...ref, tag: undefined, digest });
    if (fetched.mediaType !== MediaType.ociManifest && fetched.mediaType !== MediaType.dockerManifest) {
      throw new RegistryError('MANIFEST_UNKNOWN', `${formatReference(ref)}@${digest} is ${fetched.mediaType}, not an image manifest`);
    }
    const manifest = parseManifest(fetched.bytes, digest);
    const config = parseConfig(await this.client.blobBytes(ref, manifest.config), manifest.config.digest);
    const budget = new ContentBudget(this.limits);
    return this.transform(
      {
        ref,
        manifest,
        family: familyOf(fetched.mediaType),
        config,
        openLayer: (layer) => this.openLayer(ref, layer, budget, signal),
        budget,
        signal,
      },
      log,
    );
  }

  private async openLayer(ref: Reference, layer: Descriptor, budget: ContentBudget, signal: AbortSignal): Promise<Readable> {
    signal.throwIfAborted();
    const { stream } = await this.client.blob(ref, layer.digest, { size: layer.size });
    let tar: Readable;
    switch (layer.mediaType) {
      case MediaType.ociLayerGzip:
      case MediaType.dockerLayerGzip:
      case 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip':
      case 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': {
        // Big output chunks and a few MB of read-ahead: fewer callbacks, and decompression
        // goes on while the transform is busy with what came before.
        const gunzip = createGunzip({ chunkSize: 256 * 1024, readableHighWaterMark: 4 * 1024 * 1024 } as ZlibOptions);
        stream.on('error', (err) => gunzip.destroy(err));
        tar = stream.pipe(gunzip);
        break;
      }
      case MediaType.ociLayerTar:
      case MediaType.dockerLayerTar:
        tar = stream;
        break;
      default:
        stream.destroy();
        throw new RegistryError('MANIFEST_UNKNOWN', `layer ${layer.digest} is ${layer.mediaType}; ${this.service} reads gzip and uncompressed tar layers only`);
    }
    // Counted after decompression: the budget is what the layer expands to.
    const metered = tar.pipe(budget.meter());
    tar.on('error', (err) => metered.destroy(err));
    metered.on('close', () => {
      if (!tar.destroyed) tar.destroy();
      if (!stream.destroyed) stream.destroy();
    });
    const stop = () => metered.destroy(signal.reason instanceof Error ? signal.reason : new Error('build cancelled'));
    signal.addEventListener('abort', stop, { once: true });
    metered.once('close', () => signal.removeEventListener('abort', stop));
    return metered;
  }
}

/** The first error in a chain of `cause`s that passes `test`. */
function findCause<E extends Error>(err: unknown, test: (e: unknown) => e is E): E | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (test(e)) return e;
  }
  return undefined;
}

/** Content no transform can use, whoever asks: the upstream's fault. */
function isBadContent(e: unknown): e is Error {
  if (e instanceof UpstreamContentError || e instanceof FlattenError || e instanceof TarFormatError) return true;
  // zlib's errors for a stream that is not gzip or is corrupt (Z_DATA_ERROR, Z_BUF_ERROR, ...).
  const code = (e as { code?: unknown }).code;
  return e instanceof Error && typeof code === 'string' && code.startsWith('Z_');
}

/** An upstream manifest, index or config that is not what its media type promises. */
class UpstreamContentError extends Error {
  constructor(what: string, digest: string, problem: string) {
    super(`${what} ${digest} ${problem}`);
    this.name = 'UpstreamContentError';
  }
}

function parseJSON(bytes: Buffer, what: string, digest: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new UpstreamContentError(what, digest, `is not JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw new UpstreamContentError(what, digest, 'is not a JSON object');
  return doc;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A descriptor as far as a transform relies on it. */
function checkDescriptor(value: unknown, what: string, digest: string, field: string): void {
  if (!isObject(value)) throw new UpstreamContentError(what, digest, `has ${field} that is not a descriptor object`);
  if (typeof value.digest !== 'string') throw new UpstreamContentError(what, digest, `has ${field} without a digest`);
  if (typeof value.mediaType !== 'string') throw new UpstreamContentError(what, digest, `has ${field} without a mediaType`);
  if (typeof value.size !== 'number' || !Number.isSafeInteger(value.size) || value.size < 0) {
    throw new UpstreamContentError(what, digest, `has ${field} without a valid size`);
  }
}

function parseIndex(bytes: Buffer, digest: string): ImageIndex {
  const doc = parseJSON(bytes, 'index', digest);
  if (!Array.isArray(doc.manifests)) throw new UpstreamContentError('index', digest, 'has no manifests array');
  doc.manifests.forEach((child, i) => checkDescriptor(child, 'index', digest, `manifests[${i}]`));
  return doc as unknown as ImageIndex;
}

function parseManifest(bytes: Buffer, digest: string): ImageManifest {
  const doc = parseJSON(bytes, 'manifest', digest);
  checkDescriptor(doc.config, 'manifest', digest, 'config');
  if (!Array.isArray(doc.layers)) throw new UpstreamContentError('manifest', digest, 'has no layers array');
  doc.layers.forEach((layer, i) => checkDescriptor(layer, 'manifest', digest, `layers[${i}]`));
  return doc as unknown as ImageManifest;
}

function parseConfig(bytes: Buffer, digest: string): ImageConfig {
  return parseJSON(bytes, 'config', digest) as unknown as ImageConfig;
}
