/**
 * A read-only client of upstream registries (Docker Hub, ghcr.io, a local registry):
 * what the mirror, flatten and estargz hosts need to fetch images — resolve a tag, fetch
 * manifests with their exact bytes, stream blobs verified against their digest, list tags
 * and referrers. It authenticates like docker does, retries what may pass, and never
 * connects to an address the address policy refuses.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { sha256Digest, isSha256Digest } from '../oci/digest.js';
import { MediaType, isIndexType, isManifestType } from '../oci/mediatypes.js';
import type { Descriptor, ImageIndex, StoredManifest } from '../oci/types.js';
import { AddressPolicy, splitHostPort, type LookupAll } from './address-safety.js';
import { Authenticator, pullScope } from './auth.js';
import { DockerConfigCredentials, type Credentials } from './credentials.js';
import { UpstreamError, errorFromResponse } from './errors.js';
import { InvalidReferenceError, isRepositoryName, parseReference, registryEndpointHost, formatReference, type Reference } from './reference.js';
import { isRetryableStatus, retryDelay, sleep, type RetryPolicy } from './retry.js';
import { Transport, discard, readBody, type SendRequest, type UpstreamResponse } from './transport.js';
import { VerifyingStream } from './verify.js';

export interface RegistryClientOptions {
  /** `host[:port]` entries that may be private/loopback and are reached over plain HTTP. */
  insecureRegistries?: string[];
  /** A docker `config.json` to take credentials from; without it every pull is anonymous. */
  dockerConfigPath?: string;
  /** Where credentials come from instead of `dockerConfigPath` (the proxies read several files). */
  credentials?: { get(registry: string): Promise<Credentials | undefined> };
  userAgent?: string;
  /**
   * connectMs: to connect; stallMs: for response headers, and the longest pause in a body;
   * minBytesPerSecond over rateWindowMs: the slowest body accepted (0: any).
   */
  timeouts?: { connectMs?: number; stallMs?: number; minBytesPerSecond?: number; rateWindowMs?: number };
  /** Further attempts after a connection error, 429 or 5xx. */
  retries?: number;
  /** Backoff and Retry-After bounds; see RetryPolicy. */
  retry?: Partial<Omit<RetryPolicy, 'retries'>>;
  logger?: Pick<Logger, 'debug' | 'warn'>;
  /** DNS resolution, replaceable in tests. */
  lookup?: LookupAll;
  /** Extra trusted CA certificates (PEM) for registries with a private CA. */
  ca?: Array<string | Buffer>;
}

/** A repository on a registry; a Reference is one too. */
export interface Repository {
  registry: string;
  repository: string;
}

export interface BlobOptions {
  /** Inclusive byte range; the digest cannot be checked for a part, only its length. */
  range?: { start: number; end?: number };
  /** Expected size (from the descriptor), checked against what is sent. */
  size?: number;
}

export interface BlobStream {
  /** The content, verified as it streams: it errors instead of ending on a mismatch. */
  stream: Readable;
  /** Bytes the stream will deliver, when the upstream or the caller said. */
  size: number | undefined;
  /** The upstream's Content-Length, when it sent one (a chunked body has none). */
  contentLength?: number;
  /** Whether the digest is checked (false for a part of a blob). */
  verified: boolean;
}

export interface TagList {
  name: string;
  tags: string[];
  /** The upstream's `Link: <…>; rel="next"`, with its `n` and `last` pulled out. */
  next?: { link: string; n?: number; last?: string };
}

/** Everything a puller can use, in containerd's order (schema 1 is not one of them). */
export const MANIFEST_TYPES: readonly string[] = [MediaType.dockerManifest, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.ociIndex];

/** containerd's limit: an honest manifest is far smaller, a dishonest one must not fill memory. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_JSON_BYTES = 16 * 1024 * 1024;
const MAX_ERROR_BYTES = 64 * 1024;

interface Exchange {
  method: 'GET' | 'HEAD';
  path: string;
  headers?: Record<string, string>;
  followRedirects?: boolean;
  /** For messages: `HEAD manifest library/busybox:latest`. */
  what: string;
  /** The stream each answer's body is piped into (see SendRequest.bodyFor). */
  bodyFor?: SendRequest['bodyFor'];
}

export class RegistryClient {
  private readonly policy: AddressPolicy;
  private readonly transport: Transport;
  private readonly auth: Authenticator;
  private readonly retryPolicy: RetryPolicy;
  private readonly logger?: Pick<Logger, 'debug' | 'warn'>;

  constructor(options: RegistryClientOptions = {}) {
    this.policy = new AddressPolicy({ insecureRegistries: options.insecureRegistries ?? [], lookup: options.lookup });
    this.transport = new Transport({
      policy: this.policy,
      userAgent: options.userAgent ?? 'kontain',
      connectMs: options.timeouts?.connectMs ?? 10_000,
      stallMs: options.timeouts?.stallMs ?? 30_000,
      minBytesPerSecond: options.timeouts?.minBytesPerSecond ?? 0,
      rateWindowMs: options.timeouts?.rateWindowMs,
      ca: options.ca,
    });
    const credentials = options.credentials ?? new DockerConfigCredentials(options.dockerConfigPath);
    this.auth = new Authenticator({
      credentials: (registry) => credentials.get(registry),
      fetch: (registry, url, headers) => this.fetchToken(registry, url, headers),
    });
    this.retryPolicy = {
      retries: options.retries ?? 3,
      baseMs: options.retry?.baseMs ?? 250,
      maxDelayMs: options.retry?.maxDelayMs ?? 5_000,
      maxRetryAfterMs: options.retry?.maxRetryAfterMs ?? 30_000,
    };
    this.logger = options.logger;
  }

  /**
   * The descriptor a tag or digest points at. HEAD first (Docker Hub does not count it as a
   * pull); a GET only when HEAD does not say the digest, size and type.
   */
  async resolve(reference: Reference | string, accept: readonly string[] = MANIFEST_TYPES): Promise<Descriptor> {
    const ref = typeof reference === 'string' ? parseReference(reference) : reference;
    const target = manifestTarget(ref);
    const request: Exchange = { method: 'HEAD', path: `manifests/${target}`, headers: { Accept: accept.join(', ') }, followRedirects: true, what: `HEAD manifest ${describe(ref)}` };
    const head = await this.exchange(ref, request, async (res) => {
      discard(res.body);
      if (res.status === 405 || res.status === 501) return undefined; // HEAD not supported: use GET
      if (res.status !== 200) throw errorFromResponse(ref.registry, `HEAD manifest ${describe(ref)}`, res.status);
      const digest = header(res, 'docker-content-digest');
      const size = Number(header(res, 'content-length') ?? NaN);
      const mediaType = header(res, 'content-type')?.split(';')[0]!.trim();
      if (!digest || !isSha256Digest(digest) || !Number.isSafeInteger(size) || !mediaType || !MANIFEST_TYPES.includes(mediaType)) return undefined;
      if (ref.digest && digest !== ref.digest) {
        throw new UpstreamError({ registry: ref.registry, status: 200, code: 'DIGEST_INVALID', message: `upstream ${ref.registry} reported digest ${digest} for ${describe(ref)}` });
      }
      return { mediaType, digest, size };
    });
    if (head) return head;
    this.logger?.debug({ reference: formatReference(ref) }, 'manifest HEAD gave no digest; falling back to GET');
    const manifest = await this.getManifest(ref, accept);
    return { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length };
  }

  /**
   * A manifest's exact bytes, media type and digest. Fetched by digest, the bytes must hash
   * to it; fetched by tag, the digest is computed (and must agree with the upstream's).
   */
  async getManifest(reference: Reference | string, accept: readonly string[] = MANIFEST_TYPES): Promise<StoredManifest> {
    const ref = typeof reference === 'string' ? parseReference(reference) : reference;
    const what = `manifest ${describe(ref)}`;
    return this.exchange(ref, { method: 'GET', path: `manifests/${manifestTarget(ref)}`, headers: { Accept: accept.join(', ') }, followRedirects: true, what: `GET ${what}` }, async (res) => {
      if (res.status !== 200) throw await this.failure(ref.registry, `GET ${what}`, res);
      const bytes = await readBody(res.body, MAX_MANIFEST_BYTES, ref.registry, what);
      const digest = sha256Digest(bytes);
      const claimed = header(res, 'docker-content-digest');
      const bad = (message: string, code = 'DIGEST_INVALID') => new UpstreamError({ registry: ref.registry, status: 200, code, message: `upstream ${ref.registry} sent a bad ${what}: ${message}` });
      if (ref.digest && digest !== ref.digest) throw bad(`its content hashes to ${digest}`);
      if (claimed && isSha256Digest(claimed) && claimed !== digest) throw bad(`Docker-Content-Digest says ${claimed} but the content hashes to ${digest}`);
      const mediaType = manifestMediaType(header(res, 'content-type'), bytes, (m) => bad(m, 'MANIFEST_INVALID'));
      return { bytes, mediaType, digest };
    });
  }

  /**
   * A blob as a stream that checks the digest (and size) as it goes and errors at the end
   * instead of finishing when they do not match. Redirects (to object storage) are followed.
   */
  async blob(repo: Repository, digest: string, options: BlobOptions = {}): Promise<BlobStream> {
    if (!isSha256Digest(digest)) throw new Error(`cannot fetch blob ${JSON.stringify(digest)}: only sha256 digests are supported`);
    const what = `blob ${digest} of ${repo.repository}`;
    const { range } = options;
    const headers: Record<string, string> = {};
    if (range) headers.Range = `bytes=${range.start}-${range.end ?? ''}`;
    // What an answer is, from its status and headers alone: the transport pipes the body
    // straight into the verifier it names (one stream step per chunk, not two).
    let latest: { body?: Readable; answer: BlobAnswer | UpstreamError | undefined } | undefined;
    const bodyFor = (status: number, answerHeaders: IncomingHttpHeaders) => {
      const answer = blobAnswer(repo, what, digest, options, status, answerHeaders);
      latest = { answer, body: answer instanceof UpstreamError ? undefined : answer?.stream };
      // A small body can be checked, and fail, before the caller has the stream: its error
      // reaches the caller through the stream (destroyed with it), never as an uncaught one.
      latest.body?.on('error', () => undefined);
      return latest.body as VerifyingStream | undefined;
    };
    return this.exchange(repo, { method: 'GET', path: `blobs/${digest}`, headers, followRedirects: true, what: `GET ${what}`, bodyFor }, async (res) => {
      const answer = latest && (latest.body === undefined || latest.body === res.body) ? latest.answer : undefined;
      if (answer instanceof UpstreamError) {
        discard(res.body);
        throw answer;
      }
      if (!answer || answer.stream !== res.body) throw await this.failure(repo.registry, `GET ${what}`, res);
      // Refused already (a small body arrives with the headers): the caller gets a stream
      // that fails when it is read, as it would have had the bytes come later, rather
      // than one whose error event is gone.
      const refused = answer.stream.errored;
      if (refused) {
        const failing: Readable = new Readable({ read: () => failing.destroy(refused) });
        return { ...answer, stream: failing } as BlobStream;
      }
      return answer as BlobStream;
    });
  }

  /** A small blob (an image config) whole, verified; more than `limit` bytes is an error. */
  async blobBytes(repo: Repository, descriptor: { digest: string; size?: number }, limit = MAX_JSON_BYTES): Promise<Buffer> {
    const what = `blob ${descriptor.digest} of ${repo.repository}`;
    if (descriptor.size !== undefined && descriptor.size > limit) {
      throw new UpstreamError({ registry: repo.registry, status: 200, code: 'SIZE_INVALID', message: `${what} is ${descriptor.size} bytes; at most ${limit} are read` });
    }
    const { stream } = await this.blob(repo, descriptor.digest, { size: descriptor.size });
    return readBody(stream, limit, repo.registry, what);
  }

  /** One page of tags, with the upstream's pagination passed through. */
  async tags(repo: Repository, page: { n?: number; last?: string } = {}): Promise<TagList> {
    const query = new URLSearchParams();
    if (page.n !== undefined) query.set('n', String(page.n));
    if (page.last !== undefined) query.set('last', page.last);
    const qs = query.toString() ? `?${query}` : '';
    const what = `tags of ${repo.repository}`;
    return this.exchange(repo, { method: 'GET', path: `tags/list${qs}`, headers: { Accept: 'application/json' }, what: `GET ${what}` }, async (res) => {
      if (res.status !== 200) throw await this.failure(repo.registry, `GET ${what}`, res);
      const body = parseJson<{ name?: unknown; tags?: unknown }>(await readBody(res.body, MAX_JSON_BYTES, repo.registry, what), repo.registry, what);
      const tags = Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [];
      const result: TagList = { name: typeof body.name === 'string' ? body.name : repo.repository, tags };
      const link = nextLink(header(res, 'link'));
      if (link) {
        const params = new URL(link, 'http://upstream.invalid').searchParams;
        const n = params.get('n');
        result.next = { link, ...(n && /^\d+$/.test(n) ? { n: Number(n) } : {}), ...(params.has('last') ? { last: params.get('last')! } : {}) };
      }
      return result;
    });
  }

  /** The referrers index of a manifest, or undefined when the upstream has no referrers API (404). */
  async referrers(repo: Repository, digest: string, artifactType?: string): Promise<ImageIndex | undefined> {
    if (!isSha256Digest(digest)) throw new Error(`cannot list referrers of ${JSON.stringify(digest)}: only sha256 digests are supported`);
    const qs = artifactType ? `?${new URLSearchParams({ artifactType })}` : '';
    const what = `referrers of ${repo.repository}@${digest}`;
    return this.exchange(repo, { method: 'GET', path: `referrers/${digest}${qs}`, headers: { Accept: MediaType.ociIndex }, what: `GET ${what}` }, async (res) => {
      if (res.status === 404) {
        discard(res.body);
        return undefined;
      }
      if (res.status !== 200) throw await this.failure(repo.registry, `GET ${what}`, res);
      const index = parseJson<ImageIndex>(await readBody(res.body, MAX_MANIFEST_BYTES, repo.registry, what), repo.registry, what);
      if (!Array.isArray(index.manifests)) {
        throw new UpstreamError({ registry: repo.registry, status: 200, code: 'MANIFEST_INVALID', message: `upstream ${repo.registry} answered ${what} with something that is not an index` });
      }
      return index;
    });
  }

  /** Closes pooled connections. */
  close(): void {
    this.transport.close();
  }

  /**
   * One registry API call with authentication and retries. `handle` runs inside the retry
   * loop, so a small body that breaks off while being read is fetched again; a stream
   * handed back to the caller is not.
   */
  private async exchange<T>(repo: Repository, request: Exchange, handle: (res: UpstreamResponse) => Promise<T>): Promise<T> {
    // The path is built from the name: a name that is not one must not become another path.
    if (!isRepositoryName(repo.repository)) throw new InvalidReferenceError(repo.repository, 'not a valid repository name');
    const url = new URL(`/v2/${repo.repository}/${request.path}`, this.baseUrl(repo.registry));
    const scopes = [pullScope(repo.repository)];
    for (let attempt = 0; ; attempt++) {
      let delay: number | undefined;
      let failure: unknown;
      try {
        const res = await this.authenticated(repo.registry, url, request, scopes);
        if (!isRetryableStatus(res.status)) return await handle(res);
        delay = retryDelay(this.retryPolicy, attempt, header(res, 'retry-after'));
        failure = await this.failure(repo.registry, request.what, res);
      } catch (err) {
        failure = err;
        delay = isTransient(err) ? retryDelay(this.retryPolicy, attempt) : undefined;
      }
      if (delay === undefined) throw failure;
      this.logger?.warn({ registry: repo.registry, err: (failure as Error).message, attempt, delayMs: delay }, `retrying ${request.what}`);
      await sleep(delay);
    }
  }

  /** Sends with the Authorization already known for the registry; answers one 401 challenge. */
  private async authenticated(registry: string, url: URL, request: Exchange, scopes: string[]): Promise<UpstreamResponse> {
    const send = (authorization?: string) =>
      this.transport.send({
        registry,
        method: request.method,
        url,
        headers: { ...request.headers, ...(authorization ? { Authorization: authorization } : {}) },
        followRedirects: request.followRedirects,
        bodyFor: request.bodyFor,
      });
    const sent = await this.auth.authorization(registry, scopes);
    const res = await send(sent);
    if (res.status !== 401) return res;
    const challenge = res.headers['www-authenticate'];
    const body = await this.errorBody(res);
    const retry = await this.auth.answer(registry, challenge, scopes, sent);
    if (!retry) throw errorFromResponse(registry, request.what, 401, body);
    return send(retry);
  }

  /** One token request; its failures are retried with the registry call that needed it. */
  private async fetchToken(registry: string, url: URL, headers: Record<string, string>): Promise<{ status: number; body: Buffer }> {
    const res = await this.transport.send({ registry, method: 'GET', url, headers, followRedirects: true });
    return { status: res.status, body: await readBody(res.body, MAX_JSON_BYTES, registry, `token from ${url.origin}`) };
  }

  /** http:// only for allowlisted registries; Docker Hub's API host for docker.io. */
  private baseUrl(registry: string): string {
    const host = registryEndpointHost(registry);
    const { hostname, port } = splitHostPort(host);
    return `${this.policy.isInsecure(hostname, port ?? 80) ? 'http' : 'https'}://${host}`;
  }

  private async errorBody(res: UpstreamResponse): Promise<Buffer | undefined> {
    try {
      return await readBody(res.body, MAX_ERROR_BYTES, '', 'error');
    } catch {
      return undefined;
    }
  }

  private async failure(registry: string, what: string, res: UpstreamResponse): Promise<UpstreamError> {
    return errorFromResponse(registry, what, res.status, await this.errorBody(res));
  }
}

/** Worth another attempt: no answer, or a token server's 429/5xx. */
function isTransient(err: unknown): boolean {
  return err instanceof UpstreamError && (err.code === 'UNREACHABLE' || isRetryableStatus(err.status));
}

function manifestTarget(ref: Reference): string {
  const target = ref.digest ?? ref.tag;
  if (!target) throw new Error(`reference ${formatReference(ref)} has neither tag nor digest`);
  return target;
}

function describe(ref: Reference): string {
  return `${ref.repository}${ref.digest ? `@${ref.digest}` : `:${ref.tag}`}`;
}

function header({ headers }: Pick<UpstreamResponse, 'headers'>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function parseJson<T>(bytes: Buffer, registry: string, what: string): T {
  try {
    const value = JSON.parse(bytes.toString('utf8')) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as T;
  } catch {
    // fall through
  }
  throw new UpstreamError({ registry, status: 200, code: 'MANIFEST_INVALID', message: `upstream ${registry} answered ${what} with something that is not a JSON object` });
}

/**
 * The manifest's type: its own `mediaType` field, which must agree with Content-Type when
 * that names a manifest type; guessed from the shape for an OCI manifest without the field.
 */
function manifestMediaType(contentType: string | undefined, bytes: Buffer, bad: (message: string) => Error): string {
  let parsed: { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown; config?: unknown };
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
  } catch {
    throw bad('it is not JSON');
  }
  if (!parsed || typeof parsed !== 'object') throw bad('it is not a JSON object');
  if (parsed.schemaVersion === 1) throw bad('Docker schema 1 manifests are not supported');
  const headerType = contentType?.split(';')[0]!.trim();
  const headerIsManifest = headerType !== undefined && (isManifestType(headerType) || isIndexType(headerType));
  let mediaType: string | undefined;
  if (typeof parsed.mediaType === 'string') {
    if (headerIsManifest && parsed.mediaType !== headerType) throw bad(`Content-Type ${headerType} does not match its mediaType ${parsed.mediaType}`);
    mediaType = parsed.mediaType;
  } else if (headerIsManifest) {
    mediaType = headerType;
  } else if (Array.isArray(parsed.manifests)) {
    mediaType = MediaType.ociIndex;
  } else if (parsed.config && typeof parsed.config === 'object') {
    mediaType = MediaType.ociManifest;
  }
  if (!mediaType || !(isManifestType(mediaType) || isIndexType(mediaType))) {
    throw bad(`unsupported manifest type ${JSON.stringify(mediaType ?? headerType ?? 'none')}`);
  }
  return mediaType;
}

/** `<url>; rel="next"` from a Link header. */
function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (m && /\brel="?next"?/i.test(m[2]!)) return m[1];
  }
  return undefined;
}

type BlobAnswer = BlobStream & { stream: VerifyingStream };

/**
 * How a blob GET's answer is read, from its status and headers: a verifying stream with
 * the size it will deliver, an error for an answer that cannot be right (a wrong
 * Content-Range or length), or undefined for one that is not a blob (a failure).
 */
function blobAnswer(repo: Repository, what: string, digest: string, options: BlobOptions, status: number, headers: IncomingHttpHeaders): BlobAnswer | UpstreamError | undefined {
  const get = (name: string) => header({ headers }, name);
  const { range } = options;
  const length = get('content-length') === undefined ? undefined : Number(get('content-length'));
  if (status === 206 && range) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(get('content-range') ?? '');
    if (!m || Number(m[1]) !== range.start) {
      return new UpstreamError({ registry: repo.registry, status: 206, code: 'RANGE_INVALID', message: `upstream ${repo.registry} answered the range request for ${what} with Content-Range ${JSON.stringify(get('content-range'))}` });
    }
    const size = Number(m[2]) - Number(m[1]) + 1;
    return { stream: new VerifyingStream({ registry: repo.registry, what, size }), size, contentLength: length, verified: false };
  }
  if (status !== 200) return undefined;
  if (options.size !== undefined && length !== undefined && length !== options.size) {
    return new UpstreamError({ registry: repo.registry, status: 200, code: 'SIZE_INVALID', message: `upstream ${repo.registry} sent ${length} bytes for ${what}, expected ${options.size}` });
  }
  const total = options.size ?? length;
  // A whole blob answering a range request: check it all, pass on only the range.
  const window = range && (range.start > 0 || range.end !== undefined) ? range : undefined;
  const stream = new VerifyingStream({ registry: repo.registry, what, digest, size: total, window });
  const size = window && total !== undefined ? Math.min(total - 1, window.end ?? total - 1) - window.start + 1 : total;
  return { stream, size, contentLength: length, verified: true };
}
