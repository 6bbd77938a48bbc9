/**
 * skopeo's `experimental-image-proxy` protocol (0.2.x), as containers-image-proxy-rs
 * speaks it: one JSON request per SOCK_SEQPACKET message (`{method, args}`), one JSON
 * reply (`{success, value, pipeid, error_code, error}`), and bulk data on pipes whose read
 * end travels with the reply (SCM_RIGHTS). Requests are handled one at a time, in order,
 * as skopeo does: FinishPipe holds the socket until its pipe's writer is done.
 */
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { Readable } from 'node:stream';
import { isDigest } from '../oci/digest.js';
import type { Platform } from '../oci/types.js';
import { UpstreamError } from '../remote/index.js';
import { isRetryableStatus } from '../remote/retry.js';
import { ImageNotFound } from './image-source.js';
import type { ImageOpener } from './open-image.js';
import { closeFd, openPipe, type SeqpacketSocket } from './native.js';
import { ProxyImage } from './proxy-image.js';

export const PROTOCOL_VERSION = '0.2.8';
/** skopeo reads requests into a buffer of this size. */
const MAX_MESSAGE_BYTES = 32 * 1024;

type ErrorCode = 'EPIPE' | 'retryable' | 'other';

/** An error that goes back to the client as the reply's `error`. */
class RequestError extends Error {}

interface Reply {
  value?: unknown;
  /** Read ends to pass with the reply (closed here once sent). */
  fds?: number[];
  pipeid?: number;
}

interface ActivePipe {
  writer: Writable;
  done: Promise<void>;
  error?: Error;
}

export function errorCode(err: unknown): ErrorCode {
  if ((err as NodeJS.ErrnoException)?.code === 'EPIPE') return 'EPIPE';
  if (err instanceof UpstreamError && (err.code === 'UNREACHABLE' || isRetryableStatus(err.status))) return 'retryable';
  return 'other';
}

/** Go's %T of a decoded JSON value, for messages that match skopeo's. */
function goType(value: unknown): string {
  if (value === null || value === undefined) return '<nil>';
  if (Array.isArray(value)) return '[]interface {}';
  if (typeof value === 'object') return 'map[string]interface {}';
  return typeof value === 'number' ? 'float64' : typeof value;
}

function parseUint64(value: unknown): number {
  if (typeof value !== 'number') throw new RequestError(`expecting numeric, not ${goType(value)}`);
  if (value > Number.MAX_SAFE_INTEGER || value < 0) throw new RequestError(`out of range integer for numeric ${value}`);
  return Math.trunc(value);
}

/** go-digest's Parse, for the messages it gives. */
function parseDigest(value: string): string {
  const colon = value.indexOf(':');
  if (colon <= 0 || colon === value.length - 1) throw new RequestError('invalid checksum digest format');
  if (value.slice(0, colon) !== 'sha256') throw new RequestError('unsupported digest algorithm');
  if (!isDigest(value)) throw new RequestError(value.length !== 71 ? 'invalid checksum digest length' : 'invalid checksum digest format');
  return value;
}

/**
 * Pipes a stream into a pipe's writer (backpressure by stream.pipe) without ending it;
 * resolves with the byte count when the source ends cleanly.
 */
function copyInto(stream: Readable, writer: Writable): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      stream.unpipe(writer);
      stream.destroy();
      reject(err);
    };
    stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
    stream.once('error', fail);
    writer.once('error', fail);
    stream.once('end', () => {
      if (settled) return;
      settled = true;
      writer.off('error', fail);
      resolve(bytes);
    });
    stream.pipe(writer, { end: false });
  });
}

export interface JsonProxyOptions {
  opener: ImageOpener;
  platform: Platform;
  log: Logger;
}

export class JsonProxy {
  private initialized = false;
  private serial = 0;
  private readonly images = new Map<number, ProxyImage>();
  private readonly pipes = new Map<number, ActivePipe>();

  constructor(private readonly options: JsonProxyOptions) {}

  /** Serves until the client sends Shutdown or closes its end. */
  async serve(socket: SeqpacketSocket): Promise<void> {
    try {
      for (;;) {
        const packet = await socket.receive(MAX_MESSAGE_BYTES);
        if (!packet) return;
        for (const fd of packet.fds) closeFd(fd);
        let request: { method?: unknown; args?: unknown };
        let reply: Reply = {};
        let failure: unknown;
        try {
          request = this.parse(packet.data, packet.truncated);
          if (request.method === 'Shutdown') return;
          reply = await this.dispatch(String(request.method), Array.isArray(request.args) ? request.args : []);
        } catch (err) {
          failure = err;
          if (!(err instanceof RequestError) && !(err instanceof ImageNotFound)) this.options.log.debug({ err }, 'request failed');
        }
        await this.send(socket, reply, failure);
      }
    } finally {
      await this.close();
    }
  }

  private parse(data: Buffer, truncated: boolean): { method?: unknown; args?: unknown } {
    let parsed: unknown;
    try {
      if (truncated) throw new Error(`message longer than ${MAX_MESSAGE_BYTES} bytes`);
      parsed = JSON.parse(data.toString('utf8'));
    } catch (err) {
      throw new RequestError(`invalid request: ${(err as Error).message}`);
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new RequestError('invalid request: not a JSON object');
    return parsed as { method?: unknown; args?: unknown };
  }

  private async send(socket: SeqpacketSocket, reply: Reply, failure: unknown): Promise<void> {
    const body = {
      success: failure === undefined,
      value: failure === undefined ? (reply.value ?? null) : null,
      pipeid: reply.pipeid ?? 0,
      error_code: failure === undefined ? '' : errorCode(failure),
      error: failure === undefined ? '' : failure instanceof Error ? failure.message : String(failure),
    };
    try {
      await socket.send(Buffer.from(JSON.stringify(body)), reply.fds ?? []);
    } finally {
      for (const fd of reply.fds ?? []) closeFd(fd);
    }
  }

  private async dispatch(method: string, args: unknown[]): Promise<Reply> {
    switch (method) {
      case 'Initialize':
        if (args.length !== 0) throw new RequestError('invalid request, expecting zero arguments');
        if (this.initialized) throw new RequestError('already initialized');
        this.initialized = true;
        return { value: PROTOCOL_VERSION };
      case 'OpenImage':
        return this.openImage(args, false);
      case 'OpenImageOptional':
        return this.openImage(args, true);
      case 'CloseImage': {
        this.requireInitialized();
        if (args.length !== 1) throw new RequestError('invalid request, expecting one argument');
        const id = this.imageId(args[0]);
        await this.images.get(id)!.source.close();
        this.images.delete(id);
        return {};
      }
      case 'GetManifest': {
        const image = this.imageArg(args, 'invalid request, expecting one argument');
        const { digest, bytes } = await image.manifest();
        return this.returnBytes(digest, bytes);
      }
      case 'GetFullConfig':
        return this.returnBytes(null, await this.imageArg(args, 'invalid request, expecting: [imgid]').fullConfig());
      case 'GetConfig':
        return this.returnBytes(null, await this.imageArg(args, 'invalid request, expecting: [imgid]').runtimeConfig());
      case 'GetBlob':
        return this.getBlob(args);
      case 'GetRawBlob':
        return this.getRawBlob(args);
      case 'GetLayerInfo':
        return { value: await this.imageArg(args, `found ${args.length} args, expecting (imgid)`).layerInfo() };
      case 'GetLayerInfoPiped': {
        const layers = await this.imageArg(args, `found ${args.length} args, expecting (imgid)`).layerInfo();
        return this.returnBytes(null, Buffer.from(JSON.stringify(layers)));
      }
      case 'FinishPipe':
        return this.finishPipe(args);
      default:
        throw new RequestError(`unknown method: ${method}`);
    }
  }

  private requireInitialized(): void {
    if (!this.initialized) throw new RequestError('client error: must invoke Initialize');
  }

  private imageId(value: unknown): number {
    const id = parseUint64(value);
    if (id === 0) throw new RequestError('Invalid imageid value of zero');
    if (!this.images.has(id)) throw new RequestError(`no image ${id}`);
    return id;
  }

  private imageArg(args: unknown[], arity: string, count = 1): ProxyImage {
    this.requireInitialized();
    if (args.length !== count) throw new RequestError(arity);
    return this.images.get(this.imageId(args[0]))!;
  }

  private async openImage(args: unknown[], allowNotFound: boolean): Promise<Reply> {
    this.requireInitialized();
    if (args.length !== 1) throw new RequestError('invalid request, expecting one argument');
    if (typeof args[0] !== 'string') throw new RequestError(`expecting string imageref, not ${goType(args[0])}`);
    try {
      const source = await this.options.opener.open(args[0]);
      const id = ++this.serial;
      this.images.set(id, new ProxyImage(source, this.options.platform));
      return { value: id };
    } catch (err) {
      if (allowNotFound && err instanceof ImageNotFound) return { value: 0 };
      throw err;
    }
  }

  /** A pipe the client reads `bytes` from; its write end closes at FinishPipe. */
  private returnBytes(value: unknown, bytes: Buffer): Reply {
    return this.startPipe(value, async (writer) => {
      await new Promise<void>((resolve, reject) => writer.write(bytes, (err) => (err ? reject(err) : resolve())));
    });
  }

  private startPipe(value: unknown, work: (writer: Writable) => Promise<void>): Reply {
    const { readFd, writeFd, writer } = openPipe();
    const pipe: ActivePipe = { writer, done: Promise.resolve() };
    writer.on('error', (err) => (pipe.error ??= err));
    pipe.done = work(writer).catch((err: unknown) => {
      pipe.error ??= err as Error;
    });
    this.pipes.set(writeFd, pipe);
    return { value, fds: [readFd], pipeid: writeFd };
  }

  private async getBlob(args: unknown[]): Promise<Reply> {
    const image = this.imageArg(args, `found ${args.length} args, expecting (imgid, digest, size)`, 3);
    if (typeof args[1] !== 'string') throw new RequestError('expecting string blobid');
    const size = parseUint64(args[2]);
    const digest = parseDigest(args[1]);
    const blob = await image.blob(digest);
    return this.startPipe(blob.size ?? -1, async (writer) => {
      const n = await copyInto(blob.stream, writer);
      if (n !== size) throw new RequestError(`expected ${size} bytes in blob, got ${n}`);
    });
  }

  /** GetRawBlob: data on one pipe, a JSON `{code, message}` on a second when it fails; both close at the end. */
  private async getRawBlob(args: unknown[]): Promise<Reply> {
    const image = this.imageArg(args, `found ${args.length} args, expecting (imgid, digest)`, 2);
    if (typeof args[1] !== 'string') throw new RequestError('expecting string blobid');
    const blob = await image.blob(parseDigest(args[1]));
    const data = openPipe();
    const errors = openPipe();
    const finish = (writer: Writable) => new Promise<void>((resolve) => writer.end(resolve));
    data.writer.on('error', () => {});
    errors.writer.on('error', () => {});
    void (async () => {
      try {
        await copyInto(blob.stream, data.writer);
      } catch (err) {
        const message = { code: errorCode(err), message: err instanceof Error ? err.message : String(err) };
        errors.writer.write(JSON.stringify(message));
      } finally {
        await Promise.all([finish(data.writer), finish(errors.writer)]);
      }
    })();
    return { value: blob.size ?? -1, fds: [data.readFd, errors.readFd] };
  }

  private async finishPipe(args: unknown[]): Promise<Reply> {
    const id = parseUint64(args[0]);
    const pipe = this.pipes.get(id);
    if (!pipe) throw new RequestError(`finishpipe: no active pipe ${id}`);
    await pipe.done;
    // Only now does the client see the end of the data: it has to ask for the outcome.
    pipe.writer.end();
    this.pipes.delete(id);
    if (pipe.error) throw pipe.error;
    return {};
  }

  private async close(): Promise<void> {
    for (const pipe of this.pipes.values()) pipe.writer.destroy();
    this.pipes.clear();
    await Promise.all([...this.images.values()].map((image) => image.source.close().catch(() => undefined)));
    this.images.clear();
  }
}
