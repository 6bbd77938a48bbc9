import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { StorageBackend } from '../storage/backend.js';

export interface LeaseOptions {
  /** A lease not renewed for this long is taken to be held by a dead instance. */
  ttlMs: number;
  /** How often a holder renews its lease (well under ttlMs). Default ttlMs / 3. */
  renewMs?: number;
  /** First wait between looks for another instance's result; doubles up to maxPollMs. */
  pollMs?: number;
  maxPollMs?: number;
}

/** What `once` runs: where to look for a finished result, and how to make it. */
export interface LeasedWork<T> {
  /** The result if some instance has already produced it (in the store), else undefined. */
  done(): Promise<T | undefined>;
  /** Produces the result and puts it where `done` finds it. */
  work(): Promise<T>;
}

/**
 * Work done once across every instance that shares a store (Cloud Run runs several).
 *
 * A lease is an object `leases/<hash of key>/<epoch>` made with the backend's
 * create-if-absent (a generation precondition on GCS, a link on fs), so exactly one
 * instance creates each epoch. Its holder renews it by touching it; an object's
 * `created` time is its last renewal. The others poll for the result; a lease whose last
 * renewal is older than the TTL belongs to a dead instance, and whoever creates the next
 * epoch takes over. Within one process callers are already single-flighted, so this only
 * arbitrates between processes. Losing a lease race costs duplicate work, never wrong
 * content: everything the work writes is content-addressed.
 */
export class StoreLeases {
  private readonly holder = randomUUID();
  private readonly renewMs: number;
  private readonly pollMs: number;
  private readonly maxPollMs: number;

  constructor(
    private readonly backend: StorageBackend,
    private readonly options: LeaseOptions,
  ) {
    this.renewMs = options.renewMs ?? Math.max(1, Math.floor(options.ttlMs / 3));
    this.pollMs = options.pollMs ?? 100;
    this.maxPollMs = options.maxPollMs ?? 2000;
  }

  /** Every lease lives under here (garbage collection removes those of dead holders). */
  static readonly PREFIX = 'leases/';

  static prefix(key: string): string {
    return `${StoreLeases.PREFIX}${createHash('sha256').update(key).digest('hex')}/`;
  }

  /** `work.work()` run by one instance at a time; every caller gets its result. */
  async once<T>(key: string, work: LeasedWork<T>, signal?: AbortSignal): Promise<T> {
    const prefix = StoreLeases.prefix(key);
    let wait = this.pollMs;
    for (;;) {
      signal?.throwIfAborted();
      const current = await this.newestLease(prefix);
      const alive = current && Date.now() - current.renewed.getTime() < this.options.ttlMs;
      if (!alive) {
        const epoch = (current?.epoch ?? 0) + 1;
        const name = `${prefix}${String(epoch).padStart(12, '0')}`;
        const record = Readable.from([Buffer.from(JSON.stringify({ key, holder: this.holder, taken: new Date().toISOString() }))]);
        if (await this.backend.createIfAbsent(name, record, { contentType: 'application/json' })) {
          return this.holding(name, current?.name, work);
        }
        // Another instance made this epoch first: it holds the lease now.
      }
      const result = await work.done();
      if (result !== undefined) return result;
      await sleep(wait, undefined, { signal });
      wait = Math.min(wait * 2, this.maxPollMs);
    }
  }

  private async holding<T>(name: string, previous: string | undefined, work: LeasedWork<T>): Promise<T> {
    const renewal = setInterval(() => {
      this.backend.touch(name).catch(() => undefined);
    }, this.renewMs);
    renewal.unref();
    try {
      if (previous) await this.backend.delete(previous);
      // The last holder may have finished between our look and our taking the lease.
      return (await work.done()) ?? (await work.work());
    } finally {
      clearInterval(renewal);
      await this.backend.delete(name).catch(() => undefined);
    }
  }

  private async newestLease(prefix: string): Promise<{ name: string; epoch: number; renewed: Date } | undefined> {
    let newest: { name: string; epoch: number; renewed: Date } | undefined;
    for await (const { name, info } of this.backend.list(prefix)) {
      const epoch = Number(name.slice(prefix.length));
      if (Number.isInteger(epoch) && (!newest || epoch > newest.epoch)) newest = { name, epoch, renewed: info.created };
    }
    return newest;
  }
}
