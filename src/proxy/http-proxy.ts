/**
 * `kontain proxy`: container-image-proxy's HTTP/1.1 protocol over one connection that
 * the parent hands over (a socket fd, or stdin/stdout). Requests come one after another
 * on that keep-alive connection:
 *   GET /manifest        the OCI manifest (index resolved), `Manifest-Digest` = original digest
 *   GET /config          the config that manifest names
 *   GET /blobs/<digest>  the blob, verified
 *   POST /quit           answered, then the process exits 0
 * Unlike the reference it answers errors as JSON `{code, message}` with Content-Length
 * and a real status line, and a blob that turns out not to match its digest never ends
 * as a complete message: its last bytes are held back until the digest checks out, and
 * the connection is cut instead.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { isSha256Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Platform } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import { UpstreamError } from '../remote/index.js';
import { ImageNotFound } from './image-source.js';
import { ConversionError } from './oci-conversion.js';
import type { ImageOpener } from './open-image.js';
import { ProxyImage } from './proxy-image.js';

/** Passes chunks on one behind, so the last one is sent only when the source ends cleanly. */
export class HoldLastChunk extends Transform {
  private held?: Buffer;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const previous = this.held;
    this.held = chunk;
    callback(null, previous);
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.held);
  }
}

interface HttpError {
  status: number;
  code: string;
  message: string;
}

/** What went wrong, as a status and a code a client can act on. */
export function httpError(err: unknown): HttpError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ImageNotFound) return { status: 404, code: 'MANIFEST_UNKNOWN', message };
  if (err instanceof RegistryError) return { status: err.status, code: err.code, message };
  if (err instanceof UpstreamError) {
    const notFound = err.status === 404;
    return { status: notFound ? 404 : 502, code: err.code ?? (notFound ? 'NOT_FOUND' : 'UPSTREAM_ERROR'), message };
  }
  if (err instanceof ConversionError) return { status: 502, code: 'CONFIG_INVALID', message };
  return { status: 502, code: 'UPSTREAM_ERROR', message };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
  res.end(bytes);
}

function sendError(res: ServerResponse, error: HttpError): void {
  sendJson(res, error.status, { code: error.code, message: error.message });
}

export interface HttpProxyOptions {
  reference: string;
  opener: ImageOpener;
  platform: Platform;
  log: Logger;
}

export class HttpProxy {
  private image?: ProxyImage;
  /** A blob failed after its answer began: the connection was cut, the exit status says so. */
  private failed = false;

  constructor(private readonly options: HttpProxyOptions) {}

  /** Opened on the first request that needs it; a failure is answered and tried again next time. */
  private async opened(): Promise<ProxyImage> {
    this.image ??= new ProxyImage(await this.options.opener.open(this.options.reference), this.options.platform);
    return this.image;
  }

  /**
   * Serves the one connection; resolves with the exit code on /quit, when the connection
   * closes, or when its input has ended and every request read before the end is answered
   * (a parent that writes its requests and closes stdin still gets every answer).
   */
  serve(connection: Duplex): Promise<number> {
    return new Promise((done) => {
      // Decided a turn later, so a failure that closes the connection is known by then.
      const resolve = (code: number) => setImmediate(() => done(this.failed ? 1 : code));
      let inputEnded = false;
      let answering = 0;
      const server = createServer({ keepAlive: true }, (req, res) => {
        answering++;
        res.once('close', () => {
          answering--;
          if (inputEnded && answering === 0) resolve(0);
        });
        this.handle(req, res).then(
          (quit) => {
            if (quit) res.once('finish', () => resolve(0));
          },
          (err: unknown) => {
            this.options.log.error({ err }, 'request failed after its answer began: closing the connection');
            this.failed = true;
            res.destroy();
            connection.destroy();
          },
        );
      });
      // One client for the life of the process: nothing here may time the connection out.
      server.keepAliveTimeout = 0;
      server.requestTimeout = 0;
      server.headersTimeout = 0;
      // The end of the input is not the end of the answers: without this, Node's server
      // aborts the requests in flight and ends the output when its input ends. The flag is
      // the server's own (every Node since 0.x; untyped), and the stdin test guards it.
      (server as typeof server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
      connection.once('close', () => resolve(0));
      connection.once('end', () => {
        inputEnded = true;
        if (answering === 0) resolve(0);
      });
      connection.on('error', (err) => {
        this.options.log.debug({ err }, 'connection error');
        resolve(0);
      });
      server.emit('connection', connection);
    });
  }

  /** Answers one request; true for /quit. */
  private async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://proxy.invalid');
    const route = url.pathname;
    const allowed = route === '/quit' ? 'POST' : 'GET';
    const known = route === '/quit' || route === '/manifest' || route === '/config' || route.startsWith('/blobs/');
    if (!known) {
      sendError(res, { status: 404, code: 'NOT_FOUND', message: `no such endpoint ${route}: use GET /manifest, GET /config, GET /blobs/<digest> or POST /quit` });
      return false;
    }
    if (req.method !== allowed && !(allowed === 'GET' && req.method === 'HEAD')) {
      res.setHeader('Allow', allowed);
      sendError(res, { status: 405, code: 'METHOD_NOT_ALLOWED', message: `${route} takes ${allowed}, not ${req.method}` });
      return false;
    }
    if (route === '/quit') {
      sendJson(res, 200, {});
      return true;
    }
    try {
      const image = await this.opened();
      if (route === '/manifest') {
        const { digest, bytes } = await image.manifest();
        res.writeHead(200, { 'Content-Type': MediaType.ociManifest, 'Content-Length': bytes.length, 'Manifest-Digest': digest });
        res.end(req.method === 'HEAD' ? undefined : bytes);
      } else if (route === '/config') {
        const bytes = await image.config();
        res.writeHead(200, { 'Content-Type': MediaType.ociConfig, 'Content-Length': bytes.length });
        res.end(req.method === 'HEAD' ? undefined : bytes);
      } else {
        await this.sendBlob(image, decodeURIComponent(route.slice('/blobs/'.length)), req, res);
      }
    } catch (err) {
      // Part of a body is out (or the response is gone): only cutting the connection is honest.
      if (res.headersSent || res.destroyed) throw err;
      sendError(res, httpError(err));
    }
    return false;
  }

  private async sendBlob(image: ProxyImage, digest: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!isSha256Digest(digest)) {
      sendError(res, { status: 400, code: 'DIGEST_INVALID', message: `${JSON.stringify(digest)} is not a sha256 digest` });
      return;
    }
    // The manifest is resolved first, so the converted config of a Docker image is known.
    await image.manifest();
    const blob = await image.blob(digest);
    res.statusCode = 200;
    res.setHeader('Content-Type', 'application/octet-stream');
    if (blob.size !== undefined) res.setHeader('Content-Length', blob.size);
    if (req.method === 'HEAD') {
      blob.stream.destroy();
      res.end();
      return;
    }
    try {
      await pipeline(blob.stream, new HoldLastChunk(), res);
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }
}
