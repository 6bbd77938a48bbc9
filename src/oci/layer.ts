import type { Transform } from 'node:stream';
import { StoredGzip } from './stored-gzip.js';
import { ParallelGzip } from './parallel-gzip.js';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { ContentStore } from '../content/store.js';
import { DigestingStream } from './digest.js';

/** A layer as written: what a manifest descriptor and a config's diff_ids need. */
export interface WrittenLayer {
  /** Digest of the compressed blob (the manifest's layer digest). */
  digest: string;
  size: number;
  /** Digest of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffID: string;
  uncompressedSize: number;
}

export interface LayerWriteOptions {
  /**
   * gzip level, 0-9. Level 0 frames the tar as stored deflate blocks: still a valid gzip
   * layer that every client accepts, with no time spent on data that will not shrink.
   */
  gzipLevel?: number;
}

/**
 * tar → sha256 (diffID) → gzip → sha256 (digest) → store, in one streaming pass: no
 * layer is ever held in memory.
 */
export async function writeGzipLayer(store: ContentStore, tar: Readable, options: LayerWriteOptions = {}): Promise<WrittenLayer> {
  const uncompressed = new DigestingStream();
  const level = options.gzipLevel ?? 6;
  const gzip: Transform = level === 0 ? new StoredGzip() : new ParallelGzip({ level });
  const stored = store.putBlob(gzip);
  // Both settle before this returns or throws: a failed write has removed its partial upload by then.
  const [piped, blob] = await Promise.allSettled([pipeline(tar, uncompressed, gzip), stored]);
  if (piped.status === 'rejected') throw piped.reason;
  if (blob.status === 'rejected') throw blob.reason;
  return { digest: blob.value.digest, size: blob.value.size, diffID: uncompressed.digest, uncompressedSize: uncompressed.size };
}
