/**
 * One HTTP exchange with an upstream, made safe: the target address is checked and pinned
 * (address-safety), plain HTTP only for allowlisted hosts, a connect timeout, a stall
 * timeout (no bytes for `stallMs` while the reader wants more), a minimum rate (fewer than
 * `minBytesPerSecond` over a `rateWindowMs` window while the reader wants more: a
 * trickle that never quite stalls), and redirects followed
 * without carrying Authorization to another origin. Bodies stay streams; retries and
 * authentication are the client's business.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type https from 'node:https';
import type { LookupFunction, Socket } from 'node:net';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import type { AddressPolicy } from './address-safety.js';
import { UnsafeAddressError } from './address-safety.js';
import { UpstreamError } from './errors.js';
import { BLOB_STREAM_HIGH_WATER_MARK } from '../util/blob-stream.js';
import { readLimited } from '../util/byte-limit.js';

export interface TransportOptions {
  policy: AddressPolicy;
  userAgent: string;
  connectMs: number;
  stallMs: number;
  /** A body slower than this over a whole window (while its reader keeps up) is cut off; 0: no minimum. */
  minBytesPerSecond?: number;
  /** The window over which the minimum rate is judged; defaults to stallMs. */
  rateWindowMs?: number;
  maxRedirects?: number;
  /** Extra trusted CA certificates (PEM), added to Node's own roots: private registries, tests. */
  ca?: Array<string | Buffer>;
}

export interface SendRequest {
  /** Names the upstream in errors. */
  registry: string;
  method: 'GET' | 'HEAD';
  url: URL;
  headers?: Record<string, string>;
  followRedirects?: boolean;
  /**
   * The stream an answer's body is piped into, chosen from its status and headers (a
   * blob's verifier), instead of a plain PassThrough: one stream step less per chunk.
   * Called for every answer, redirects included; undefined means the PassThrough.
   */
  bodyFor?: (status: number, headers: IncomingHttpHeaders) => Duplex | undefined;
}

export interface UpstreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body, guarded by the stall timer; consume it or call `discard`. */
  body: Readable;
  /** The URL that answered, after redirects. */
  url: URL;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

interface Tls {
  https: typeof https;
  agent: https.Agent;
}

export class Transport {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  /**
   * node:https and its agent, loaded for the first https request: loading TLS costs a
   * process that starts per client (the image proxies) about 10 ms, and a plain-HTTP
   * upstream (a registry on loopback) never needs it.
   */
  private tls?: Promise<Tls>;
  /** Sockets that finished connecting (and TLS); a reused one needs no connect timer. */
  private readonly connected = new WeakSet<Socket>();

  constructor(private readonly options: TransportOptions) {}

  private loadTls(): Promise<Tls> {
    return (this.tls ??= Promise.all([import('node:https'), import('node:tls')]).then(([{ default: https }, { rootCertificates }]) => {
      // Node's `ca` replaces the default roots, so extra ones go alongside them.
      const ca = this.options.ca?.length ? [...rootCertificates, ...this.options.ca] : undefined;
      return { https, agent: new https.Agent({ keepAlive: true, maxSockets: 64, ...(ca ? { ca } : {}) }) };
    }));
  }

  async send(request: SendRequest): Promise<UpstreamResponse> {
    let url = request.url;
    let headers = { ...request.headers };
    const maxRedirects = request.followRedirects ? (this.options.maxRedirects ?? 5) : 0;
    for (let hop = 0; ; hop++) {
      const response = await this.once(request.registry, request.method, url, headers, request.bodyFor);
      const location = response.headers.location;
      if (!REDIRECTS.has(response.status) || !location || hop >= maxRedirects) return response;
      discard(response.body);
      const next = new URL(location, url);
      // Tokens are for the registry; a storage host (S3, GCS) must not see them.
      if (next.origin !== url.origin) {
        headers = Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'authorization'));
      }
      url = next;
    }
  }

  close(): void {
    this.httpAgent.destroy();
    void this.tls?.then(({ agent }) => agent.destroy());
  }

  /**
   * Calls `tooSlow` when fewer than minBytesPerSecond × window arrive in a window while the
   * reader was keeping up; returns the function that stops watching.
   */
  private watchRate(res: IncomingMessage, body: Duplex, tooSlow: (message: string) => void): () => void {
    const minRate = this.options.minBytesPerSecond ?? 0;
    if (!(minRate > 0)) return () => undefined;
    const windowMs = this.options.rateWindowMs ?? this.options.stallMs;
    const wanted = (minRate * windowMs) / 1000;
    let received = 0;
    res.on('data', (chunk: Buffer) => (received += chunk.length));
    const timer = setInterval(() => {
      const slow = received < wanted && !res.isPaused() && !body.writableNeedDrain;
      if (slow) {
        clearInterval(timer);
        tooSlow(`sent ${received} bytes in ${seconds(windowMs)}, below the minimum of ${minRate} bytes/s (KONTAIN_UPSTREAM_MIN_RATE)`);
      }
      received = 0;
    }, windowMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  private async once(registry: string, method: string, url: URL, headers: Record<string, string>, bodyFor?: SendRequest['bodyFor']): Promise<UpstreamResponse> {
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const secure = url.protocol === 'https:';
    const port = url.port ? Number(url.port) : secure ? 443 : 80;
    if (!secure && url.protocol !== 'http:') {
      throw new UnsafeAddressError(registry, `refusing ${url.protocol} URL ${url.href} for registry ${registry}: only http(s) is spoken`);
    }
    if (!secure && !this.options.policy.isInsecure(hostname, port)) {
      throw new UnsafeAddressError(
        registry,
        `refusing plain HTTP to ${url.host} for registry ${registry}: only hosts in KONTAIN_INSECURE_REGISTRIES are reached without TLS`,
      );
    }
    const pinned = await this.options.policy.resolve(registry, hostname, port);
    const tls = secure ? await this.loadTls() : undefined;
    // Connect to the address that was checked, whatever DNS says next; Host and SNI keep the name.
    const lookup = ((_host: string, opts: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      if (opts?.all) callback(null, [{ address: pinned.address, family: pinned.family }]);
      else callback(null, pinned.address, pinned.family);
    }) as unknown as LookupFunction;

    const { connectMs, stallMs } = this.options;
    const where = `${registry}${url.host === registry ? '' : ` (${url.host})`}`;
    return new Promise<UpstreamResponse>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const arm = (ms: number, onFire: () => void) => {
        clearTimeout(timer);
        timer = setTimeout(onFire, ms);
      };
      const fail = (message: string, cause?: unknown) =>
        new UpstreamError({ registry, status: 0, code: 'UNREACHABLE', message, cause });
      // Too slow once it answered: not retried, as a retry would only be as slow again.
      const tooSlow = (message: string) => new UpstreamError({ registry, status: 0, code: 'TIMEOUT', message });

      const req = (tls ? tls.https : http).request({
        method,
        protocol: url.protocol,
        hostname,
        port,
        path: url.pathname + url.search,
        headers: { 'User-Agent': this.options.userAgent, ...headers },
        agent: tls ? tls.agent : this.httpAgent,
        lookup,
        ...(secure ? { servername: isIpLiteral(hostname) ? undefined : hostname } : {}),
      });

      const waitForHeaders = () =>
        arm(stallMs, () => req.destroy(tooSlow(`upstream ${where} sent no response to ${method} ${url.pathname} within ${stallMs} ms`)));

      req.on('socket', (socket: Socket) => {
        if (this.connected.has(socket)) return waitForHeaders();
        arm(connectMs, () => req.destroy(fail(`could not connect to upstream ${where} within ${connectMs} ms`)));
        socket.once(secure ? 'secureConnect' : 'connect', () => {
          this.connected.add(socket);
          waitForHeaders();
        });
      });

      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err instanceof UpstreamError ? err : fail(`cannot reach upstream ${where}: ${(err as Error).message}`, err));
      });

      req.on('response', (res: IncomingMessage) => {
        // One socket read per step, not 16 KiB; no deeper (see BLOB_STREAM_HIGH_WATER_MARK).
        const body = bodyFor?.(res.statusCode ?? 0, res.headers) ?? new PassThrough({ highWaterMark: BLOB_STREAM_HIGH_WATER_MARK });
        const onStall = () => {
          // A reader that is not reading is not a stalled upstream: look again later.
          if (res.isPaused() || body.writableNeedDrain) return arm(stallMs, onStall);
          // Fail the reader's stream first, so it sees why, not the abort that follows.
          body.destroy(tooSlow(`upstream ${where} stalled: no data for ${stallMs} ms while reading ${url.pathname}`));
          res.destroy();
        };
        arm(stallMs, onStall);
        const stopRate = this.watchRate(res, body, (message) => {
          body.destroy(tooSlow(`upstream ${where} ${message} while reading ${url.pathname}`));
          res.destroy();
        });
        res.once('close', stopRate);
        res.on('error', (err) => {
          clearTimeout(timer);
          body.destroy(err instanceof UpstreamError ? err : fail(`upstream ${where} broke off ${url.pathname}: ${err.message}`, err));
        });
        res.on('aborted', () => {
          clearTimeout(timer);
          body.destroy(fail(`upstream ${where} closed the connection in the middle of ${url.pathname}`));
        });
        res.on('end', () => clearTimeout(timer));
        // The reader gave up: stop the download and free the connection.
        body.on('close', () => {
          clearTimeout(timer);
          if (!res.complete) res.destroy();
        });
        res.pipe(body);
        // Progress is bytes arriving from upstream (pipe already made res flowing).
        res.on('data', () => timer?.refresh());
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, url });
      });
      req.end();
    });
  }
}

/** Seconds with one decimal, for messages. */
function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

function isIpLiteral(hostname: string): boolean {
  return /^[\d.]+$/.test(hostname) || hostname.includes(':');
}

/** Drains and drops a body we do not need, so the connection can be reused. */
export function discard(body: Readable): void {
  body.on('error', () => {});
  body.resume();
}

/** Reads a small body (manifest, JSON, error) with a size limit. */
export function readBody(body: Readable, limit: number, registry: string, what: string): Promise<Buffer> {
  return readLimited(body, limit, () => new UpstreamError({ registry, status: 200, code: 'SIZE_INVALID', message: `upstream ${registry} sent more than ${limit} bytes for ${what}` }));
}
