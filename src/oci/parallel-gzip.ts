import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';

const gzipAsync = promisify(gzip);
/**
 * zlib's output buffer per round on the thread pool: each full buffer is a round trip to
 * the main thread, and the 16 KiB default made about twenty per member.
 */
const MEMBER_OUTPUT_CHUNK = 256 * 1024;

export interface ParallelGzipOptions {
  /** zlib level, 1-9. */
  level: number;
  /** Uncompressed bytes per gzip member (default 1 MiB). */
  blockSize?: number;
  /** Members compressed at once (default: the machine's cores, at most 4). */
  concurrency?: number;
}

/**
 * gzip on every core. A zlib stream compresses on one thread-pool thread at a time, so a
 * layer writer waiting on it uses one core while the client waits. Here the input is cut
 * into blocks, each compressed on the thread pool as a gzip member of its own, and the
 * members are emitted in input order. A series of members is one gzip file (RFC 1952
 * §2.2): Go's compress/gzip (docker, containerd, podman, skopeo, umoci), zlib and eStargz
 * readers all read through the boundaries. A dictionary reset every megabyte costs well
 * under 1% of size. (pigz keeps one member with sync flushes; no maintained npm package
 * does that on the thread pool, and separate members need nothing but node:zlib.)
 */
export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Members being compressed, oldest first; emitted strictly in this order. */
  private readonly inFlight: Promise<Buffer>[] = [];
  private members = 0;

  constructor(options: ParallelGzipOptions) {
    super();
    this.level = options.level;
    this.blockSize = options.blockSize ?? 1024 * 1024;
    this.concurrency = options.concurrency ?? Math.min(4, Math.max(2, availableParallelism()));
    if (!Number.isInteger(this.level) || this.level < 1 || this.level > 9) throw new Error(`invalid gzip level ${options.level}`);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= this.blockSize) this.startMember(this.takeBlock(this.blockSize));
    this.drain(this.concurrency - 1).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still makes one (empty) member: zero bytes is not a gzip file.
    if (this.pendingBytes > 0 || this.members === 0) this.startMember(this.takeBlock(this.pendingBytes));
    this.drain(0).then(() => callback(), callback);
  }

  private takeBlock(size: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const block = all.subarray(0, size);
    const rest = all.subarray(size);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return block;
  }

  private startMember(block: Buffer): void {
    this.members++;
    const member = gzipAsync(block, { level: this.level, chunkSize: MEMBER_OUTPUT_CHUNK });
    // Rejections are handled when the member reaches the head of the queue.
    member.catch(() => undefined);
    this.inFlight.push(member);
  }

  /** Emits finished members in order until at most `keep` are still compressing. */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) this.push(await this.inFlight.shift()!);
  }
}
