import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

const SHA256 = /^sha256:[a-f0-9]{64}$/;
/** The image spec's digest grammar: algorithm ":" encoded. */
const ANY_DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function isDigest(value: string): boolean {
  return ANY_DIGEST.test(value);
}

/** Only sha256 is computed here; other well-formed algorithms are refused by callers. */
export function isSha256Digest(value: string): boolean {
  return SHA256.test(value);
}

export function sha256Digest(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/** The hex part of a sha256 digest. */
export function digestHex(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1);
}

/**
 * A pass-through stream that hashes and counts what flows through it, so a digest is
 * known the moment the last byte has been written, without buffering.
 */
export class DigestingStream extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;
  private result?: string;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.result = 'sha256:' + this.hash.digest('hex');
    callback();
  }

  /** The digest of everything that passed; only valid after the stream has ended. */
  get digest(): string {
    if (!this.result) throw new Error('digest read before the stream ended');
    return this.result;
  }
}
