/**
 * At most `limit` units held at once (one per holder unless a weight is given); the rest
 * wait in arrival order, and a waiter whose signal aborts leaves the queue.
 */
export class Semaphore {
  private active = 0;
  private readonly waiting: Array<{ weight: number; admit: () => void }> = [];

  constructor(private readonly limit: number) {}

  async run<T>(work: () => Promise<T>, options: { weight?: number; signal?: AbortSignal } = {}): Promise<T> {
    const weight = options.weight ?? 1;
    if (weight > this.limit) throw new RangeError(`a weight of ${weight} can never fit a limit of ${this.limit}`);
    await this.acquire(weight, options.signal);
    try {
      return await work();
    } finally {
      this.active -= weight;
      this.admitWaiting();
    }
  }

  /** Callers waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  private acquire(weight: number, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    if (this.waiting.length === 0 && this.active + weight <= this.limit) {
      this.active += weight;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        weight,
        admit: () => {
          signal?.removeEventListener('abort', leave);
          resolve();
        },
      };
      const leave = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal!.reason);
        // The one that left may have been holding up smaller ones behind it.
        this.admitWaiting();
      };
      signal?.addEventListener('abort', leave, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Admits waiters in order while the first one fits: no one overtakes a large waiter. */
  private admitWaiting(): void {
    while (this.waiting.length > 0 && this.active + this.waiting[0]!.weight <= this.limit) {
      const next = this.waiting.shift()!;
      this.active += next.weight;
      next.admit();
    }
  }
}
