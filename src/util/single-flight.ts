interface Flight<T> {
  promise: Promise<T>;
  controller: AbortController;
  /** Callers still waiting; a caller without a signal never leaves. */
  waiters: number;
}

/**
 * Runs `work` once per key among concurrent callers in this process: everyone who asks
 * for the same key while the first call is in flight gets the same result.
 *
 * A caller may pass a signal (its client's connection): when it aborts, that caller
 * stops waiting at once, and when every caller has left this way the work's own signal
 * aborts so it can stop and clean up. A later call for the key starts afresh.
 */
export class SingleFlight<T> {
  private readonly inFlight = new Map<string, Flight<T>>();

  run(key: string, work: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    let flight = this.inFlight.get(key);
    if (!flight) {
      const controller = new AbortController();
      const started: Flight<T> = { controller, waiters: 0, promise: undefined as unknown as Promise<T> };
      started.promise = (async () => {
        try {
          return await work(controller.signal);
        } finally {
          if (this.inFlight.get(key) === started) this.inFlight.delete(key);
        }
      })();
      this.inFlight.set(key, started);
      flight = started;
    }
    flight.waiters++;
    if (!signal) return flight.promise;
    const joined = flight;
    return new Promise<T>((resolve, reject) => {
      const leave = () => {
        reject(signal.reason);
        if (--joined.waiters > 0) return;
        // Nobody wants the result any more: stop the work; a new caller starts over.
        if (this.inFlight.get(key) === joined) this.inFlight.delete(key);
        joined.promise.catch(() => undefined);
        joined.controller.abort(signal.reason);
      };
      signal.addEventListener('abort', leave, { once: true });
      joined.promise.then(
        (value) => {
          signal.removeEventListener('abort', leave);
          resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', leave);
          reject(err);
        },
      );
    });
  }

  get size(): number {
    return this.inFlight.size;
  }
}
