import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.js';
import type { ByteRange } from '../storage/backend.js';
import type { BlobSource } from './generator.js';
import { upstreamFailure } from './upstream.js';
import { BLOB_STREAM_HIGH_WATER_MARK } from '../util/blob-stream.js';

/**
 * How far the first client may fall behind the upstream before it stops being fed from
 * memory and reads the rest from the store instead: the bound on what one slow (or
 * stopped) client can hold in memory.
 */
export const MAX_CLIENT_LAG_BYTES = 8 * 1024 * 1024;

/**
 * An upstream blob being copied into the store at the upstream's speed, whatever its
 * clients do. The first client to open it is fed from memory as the bytes arrive, without
 * ever slowing the copy: if it falls more than MAX_CLIENT_LAG_BYTES behind, it is fed the
 * rest from the store once the copy is complete. Everyone else (a late client, a Range
 * request) reads from the store once the copy is complete. A client that leaves stops
 * nothing: the copy is for everyone.
 */
export class StoreCopy {
  /** Settles when the blob is in the store (rejects with the upstream's or store's failure). */
  readonly stored: Promise<void>;
  /**
   * What the store reads: a plain Readable fed from the body's 'data' handler (not a
   * PassThrough, whose writable half would be one more stream step per chunk). It asks
   * for more by resuming the body, once the copy has started.
   */
  private readonly toStore = new Readable({ highWaterMark: BLOB_STREAM_HIGH_WATER_MARK, read: () => this.started && this.body.resume() });
  private follower?: Follower;
  private started = false;
  private readonly verified: boolean;

  constructor(
    private readonly body: Readable,
    readonly size: number,
    private readonly digest: string,
    private readonly store: ContentStore,
    options: { verified: boolean; log: Logger },
  ) {
    this.verified = options.verified;
    this.stored = store.putBlob(this.toStore, digest, { sourceVerified: options.verified }).then(() => undefined);
    this.stored.catch((err: unknown) => {
      options.log.warn({ err, digest }, 'upstream blob was not stored');
      // The copy is for everyone and it failed (a store error, or the upstream's): nothing
      // reads the body any more, and a paused one would hold its upstream connection.
      // (The follower, if any, fails from the same promise.)
      body.destroy();
    });
    // The requester opens (or abandons) this source in the same turn it gets it; should it
    // never, the copy starts anyway rather than hold the upstream connection.
    setImmediate(() => this.start());
  }

  /** The source the requester that started the fetch serves from. */
  source(): BlobSource {
    return {
      size: this.size,
      open: async (range?: ByteRange) => {
        if (range || this.started) {
          this.start();
          await this.stored.catch((err: unknown) => {
            throw upstreamFailure(err, 'blob') ?? err;
          });
          return this.store.readBlob(this.digest, range);
        }
        this.follower = new Follower(this.size, this.digest, this.store, this.stored);
        this.start();
        return this.follower.out;
      },
      abandon: () => this.start(),
    };
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    const { body, toStore } = this;
    // A body checked as it arrived (a small one comes with the headers) may have been
    // refused already: that error is on the stream, not an event still to come.
    if (body.errored) {
      toStore.destroy(body.errored);
      this.follower?.fail(body.errored);
      return;
    }
    // Only the store can slow the upstream down; a client never does.
    body.on('data', (chunk: Buffer) => {
      if (!toStore.push(chunk)) body.pause();
      this.follower?.push(chunk);
    });
    body.once('end', () => {
      toStore.push(null);
      // A verified body ends only when its digest and size are right (else it errors), so
      // the client need not wait for the store to have it all.
      if (this.verified) this.follower?.caughtUp();
    });
    body.on('error', (err) => {
      toStore.destroy(err);
      this.follower?.fail(err);
    });
  }
}

/** The first client's stream: bytes from memory while it keeps up, else from the store. */
class Follower {
  readonly out = new PassThrough({ highWaterMark: BLOB_STREAM_HIGH_WATER_MARK });
  /** Bytes handed to `out` from memory. */
  private sent = 0;
  private behind = false;
  /** It was handed every byte from memory. */
  private complete = false;

  constructor(size: number, digest: string, store: ContentStore, stored: Promise<void>) {
    // A client that fell behind reads the rest once the store has it all.
    stored.then(
      async () => {
        if (this.out.destroyed || this.complete) return;
        if (!this.behind || this.sent >= size) {
          this.caughtUp();
          return;
        }
        const rest = await store.readBlob(digest, { start: this.sent, end: size - 1 });
        // pipeline: a client that leaves closes the file too, not only its own stream.
        pipeline(rest, this.out).catch(() => undefined);
      },
      (err: unknown) => this.fail(err as Error),
    ).catch((err: unknown) => this.fail(err as Error));
  }

  /** Every byte was handed over from memory: the client has it all. */
  caughtUp(): void {
    if (this.behind || this.complete) return;
    this.complete = true;
    this.out.end();
  }

  /** Cuts the client short, unless it already has every (verified) byte. */
  fail(err: Error): void {
    if (!this.complete) this.out.destroy(err);
  }

  push(chunk: Buffer): void {
    if (this.behind || this.out.destroyed) return;
    if (this.out.writableLength > MAX_CLIENT_LAG_BYTES) {
      this.behind = true;
      return;
    }
    this.out.write(chunk);
    this.sent += chunk.length;
  }
}
