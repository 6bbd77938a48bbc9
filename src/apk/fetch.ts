/**
 * Fetches what an apko build needs (indexes, keys, packages, configurations) over
 * http(s) or from file:// URLs, with size limits and timeouts.
 *
 * Two levels of trust: URLs the operator configured (KONTAIN_APK_REPOSITORY,
 * KONTAIN_APK_KEYRING) may be anywhere, files and private addresses included. URLs that
 * come from a request (apko/url/..., repositories and keys named in a fetched
 * configuration) go through the registry client's address policy: public addresses over
 * HTTPS only, loopback/private only when listed in KONTAIN_INSECURE_REGISTRIES (then
 * over plain HTTP too), never file://.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { AddressPolicy, UnsafeAddressError } from '../remote/address-safety.js';
import { UpstreamError } from '../remote/errors.js';
import { Transport, discard } from '../remote/transport.js';
import { ByteLimit, readLimited } from '../util/byte-limit.js';
import { ApkError } from './errors.js';

export type Trust = 'operator' | 'request';

export interface FetchRequest {
  url: string;
  trust: Trust;
  maxBytes: number;
  /** What is being fetched, for messages: `APKINDEX`, `package busybox-1.36.1-r0`. */
  what: string;
}

/** The operator's own URLs: no address check, plain HTTP allowed. */
class OperatorPolicy extends AddressPolicy {
  override isInsecure(): boolean {
    return true;
  }
}

export interface ApkFetcherOptions {
  insecureRegistries: readonly string[];
  connectMs?: number;
  stallMs?: number;
  /** The slowest body accepted over rateWindowMs (see Transport); 0 or unset: any. */
  minBytesPerSecond?: number;
  rateWindowMs?: number;
  /** Told about every fetch (tests and the bench count them). */
  onFetch?: (url: string) => void;
}

export class ApkFetcher {
  private readonly operator: Transport;
  private readonly request: Transport;

  constructor(private readonly options: ApkFetcherOptions) {
    const timing = {
      userAgent: 'kontain-apko',
      connectMs: options.connectMs ?? 10_000,
      stallMs: options.stallMs ?? 30_000,
      minBytesPerSecond: options.minBytesPerSecond,
      rateWindowMs: options.rateWindowMs,
    };
    this.operator = new Transport({ policy: new OperatorPolicy({ insecureRegistries: [] }), ...timing });
    this.request = new Transport({ policy: new AddressPolicy({ insecureRegistries: options.insecureRegistries }), ...timing });
  }

  /** The whole body in memory (indexes, keys, configurations). */
  async bytes(req: FetchRequest): Promise<Buffer> {
    const url = this.check(req);
    if (url.protocol === 'file:') {
      const path = fileURLToPath(url);
      const size = await stat(path).then((s) => s.size, (err: Error) => this.fail(req, `cannot read ${path}: ${err.message}`, 404));
      if (size > req.maxBytes) throw tooLarge(req);
      return readFile(path);
    }
    const body = await this.open(url, req);
    try {
      return await readLimited(body, req.maxBytes, () => tooLarge(req));
    } catch (err) {
      if (err instanceof ApkError) throw err;
      throw named(req, err);
    }
  }

  /** Streams the body into `file` (packages), refusing more than maxBytes. */
  async toFile(req: FetchRequest, file: string): Promise<number> {
    const url = this.check(req);
    let body: Readable;
    if (url.protocol === 'file:') {
      body = createReadStream(fileURLToPath(url));
    } else {
      body = await this.open(url, req);
    }
    const limit = new ByteLimit(req.maxBytes, () => tooLarge(req));
    try {
      await pipeline(body, limit, createWriteStream(file));
    } catch (err) {
      if (err instanceof ApkError) throw err;
      if (err instanceof UpstreamError) throw named(req, err);
      throw new ApkError('fetch-failed', `cannot fetch ${req.what} from ${req.url}: ${(err as Error).message}`, { cause: err });
    }
    return limit.bytes;
  }

  close(): void {
    this.operator.close();
    this.request.close();
  }

  private check(req: FetchRequest): URL {
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      throw new ApkError('malformed', `${req.what}: ${JSON.stringify(req.url)} is not a URL`);
    }
    if (url.protocol === 'file:' && req.trust === 'request') {
      throw new UnsafeAddressError(url.href, `refusing ${url.href} for ${req.what}: a request may not name local files; use an https:// URL`);
    }
    if (!['http:', 'https:', 'file:'].includes(url.protocol)) {
      throw new ApkError('malformed', `${req.what}: ${url.href} is not an http(s) or file URL`);
    }
    this.options.onFetch?.(url.href);
    return url;
  }

  private async open(url: URL, req: FetchRequest): Promise<Readable> {
    const transport = req.trust === 'operator' ? this.operator : this.request;
    const response = await transport.send({ registry: url.host, method: 'GET', url, followRedirects: true }).catch((err: unknown) => {
      throw named(req, err);
    });
    if (response.status !== 200) {
      discard(response.body);
      this.fail(req, `${url.href} answered ${response.status}`, response.status);
    }
    const length = Number(response.headers['content-length']);
    if (Number.isFinite(length) && length > req.maxBytes) {
      response.body.destroy();
      throw tooLarge(req);
    }
    return response.body;
  }

  private fail(req: FetchRequest, why: string, status: number): never {
    throw new UpstreamError({ registry: new URL(req.url).host || req.url, status, message: `cannot fetch ${req.what}: ${why}` });
  }
}

/** An upstream failure whose message names the URL, whatever layer noticed it. */
function named(req: FetchRequest, err: unknown): unknown {
  if (!(err instanceof UpstreamError) || err.message.includes(req.url)) return err;
  const renamed = new UpstreamError({ registry: err.registry, status: err.status, code: err.code, message: `cannot fetch ${req.what} from ${req.url}: ${err.message}`, cause: err });
  return renamed;
}

function tooLarge(req: FetchRequest): ApkError {
  return new ApkError('too-large', `${req.what} at ${req.url} is larger than the limit of ${req.maxBytes} bytes`);
}

