/**
 * A pass-through that checks content against what it claims to be while it streams: the
 * stream errors instead of ending when the bytes hash to another digest or their count is
 * wrong, so a consumer writing them to a store never sees a clean end and never commits
 * bad content under a good name.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { UpstreamError } from './errors.js';
import { BLOB_STREAM_HIGH_WATER_MARK } from '../util/blob-stream.js';

export interface VerifyOptions {
  registry: string;
  /** What is being read, for messages (`blob sha256:… of library/busybox`). */
  what: string;
  /** sha256 digest the whole content must hash to; omit when only a part is read. */
  digest?: string;
  /** Exact byte count of the content, when known. */
  size?: number;
  /**
   * Only pass bytes [start, end] on (inclusive), while still checking the whole content:
   * for an upstream that answered a range request with the full blob.
   */
  window?: { start: number; end?: number };
}

export class VerifyingStream extends Transform {
  private readonly hash?: Hash;
  private received = 0;

  constructor(private readonly options: VerifyOptions) {
    super({ highWaterMark: BLOB_STREAM_HIGH_WATER_MARK });
    if (options.digest) this.hash = createHash('sha256');
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const offset = this.received;
    this.received += chunk.length;
    const { size, window } = this.options;
    if (size !== undefined && this.received > size) {
      return callback(this.error('SIZE_INVALID', `more than the expected ${size} bytes`));
    }
    this.hash?.update(chunk);
    if (!window) return callback(null, chunk);
    const from = Math.max(0, window.start - offset);
    const to = window.end === undefined ? chunk.length : Math.min(chunk.length, window.end + 1 - offset);
    callback(null, to > from ? chunk.subarray(from, to) : undefined);
  }

  override _flush(callback: TransformCallback): void {
    const { size, digest } = this.options;
    if (size !== undefined && this.received !== size) {
      return callback(this.error('SIZE_INVALID', `short read: ${this.received} of ${size} bytes`));
    }
    if (digest && this.hash) {
      const actual = 'sha256:' + this.hash.digest('hex');
      if (actual !== digest) return callback(this.error('DIGEST_INVALID', `digest mismatch: content hashes to ${actual}`));
    }
    callback();
  }

  private error(code: string, problem: string): UpstreamError {
    const { registry, what } = this.options;
    return new UpstreamError({ registry, status: 200, code, message: `upstream ${registry} sent bad content for ${what}: ${problem}` });
  }
}
