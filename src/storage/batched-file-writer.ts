import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { BLOB_STREAM_HIGH_WATER_MARK } from '../util/blob-stream.js';

/** Bytes gathered before one write: a blob streams in ~64 KiB socket reads. */
export const BATCH_BYTES = 1 << 20;
/** Chunks gathered before one write, so a source of tiny chunks cannot pile up objects. */
export const BATCH_CHUNKS = 1024;

/**
 * A Writable into an open file that gathers chunks into ~1 MiB and writes each batch
 * with one `writev`. Node's fs.WriteStream writes whatever happened to queue while its
 * previous write was on the thread pool (a few 64 KiB chunks at a time for a blob
 * arriving from a socket): a thread-pool round trip, with its wake-ups, per ~200 KiB.
 * Here there is one per MiB. The chunks are written as they are (no copying into a
 * bigger buffer), and each one is acknowledged at once until the batch is full, so at
 * most one batch plus the stream's (small) highWaterMark is held.
 */
export class BatchedFileWriter extends Writable {
  private batch: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly handle: FileHandle) {
    super({ highWaterMark: BLOB_STREAM_HIGH_WATER_MARK });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.batch.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes >= BATCH_BYTES || this.batch.length >= BATCH_CHUNKS) this.flush(callback);
    else callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.flush(callback);
  }

  private flush(callback: (error?: Error | null) => void): void {
    const batch = this.batch;
    this.batch = [];
    this.bytes = 0;
    writeAll(this.handle, batch).then(() => callback(), callback);
  }
}

/** Writes every byte of `chunks` at the file's position, however many calls it takes. */
async function writeAll(handle: FileHandle, chunks: Buffer[]): Promise<void> {
  let rest = chunks.filter((chunk) => chunk.length > 0);
  while (rest.length > 0) {
    let { bytesWritten } = await handle.writev(rest);
    if (bytesWritten <= 0) throw new Error('writing a file: writev wrote nothing');
    // A short write (rare for a file, but allowed) resumes where it stopped.
    while (rest.length > 0 && bytesWritten >= rest[0]!.length) bytesWritten -= rest.shift()!.length;
    if (bytesWritten > 0) rest[0] = rest[0]!.subarray(bytesWritten);
  }
}
