import { Transform, type TransformCallback } from 'node:stream';

export interface ContentLimits {
  /** Uncompressed tar bytes, all layers together. */
  maxBytes: number;
  /** Tar entries, all layers together. */
  maxEntries: number;
}

/** Thrown when an image's layers hold more than its budget allows; says which limit and its value. */
export class BudgetExceeded extends Error {
  constructor(
    readonly limit: keyof ContentLimits,
    readonly max: number,
  ) {
    super(
      limit === 'maxBytes'
        ? `its layers expand to more than ${max.toLocaleString('en-US')} bytes uncompressed`
        : `its layers hold more than ${max.toLocaleString('en-US')} tar entries`,
    );
    this.name = 'BudgetExceeded';
  }
}

/**
 * What one derived image may read from its upstream layers, counted as the bytes and
 * entries arrive (before anything is kept for them): a gzip bomb stops at `maxBytes`
 * of output, a layer of millions of empty files at `maxEntries`. Shared by every layer
 * of the image, so many small layers add up as one big one would.
 */
export class ContentBudget {
  private bytes = 0;
  private entries = 0;

  constructor(readonly limits: ContentLimits) {}

  countEntry(): void {
    if (++this.entries > this.limits.maxEntries) throw new BudgetExceeded('maxEntries', this.limits.maxEntries);
  }

  countBytes(n: number): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxBytes) throw new BudgetExceeded('maxBytes', this.limits.maxBytes);
  }

  /** A pass-through that counts one layer's uncompressed bytes against the budget and fails past it. */
  meter(): Transform {
    const count = (n: number) => this.countBytes(n);
    return new Transform({
      transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
        try {
          count(chunk.length);
        } catch (err) {
          callback(err as Error);
          return;
        }
        callback(null, chunk);
      },
    });
  }
}
