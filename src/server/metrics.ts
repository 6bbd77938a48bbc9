import type { ServerResponse } from 'node:http';
import type { Request, Response, NextFunction, RequestHandler } from 'express';
import type { Counter, Registry } from 'prom-client';
import type { RequestLogFields } from '../registry/router.js';
import { responseBytes } from './response-bytes.js';
import { TallyHistogram } from './tally-histogram.js';

/** The label for requests that reach no host (health checks, /metrics, index pages). */
export const NO_SERVICE = 'none';

type TasksPendingSource = () => number | Promise<number>;
let tasksPendingSource: TasksPendingSource | undefined;

/**
 * Registers what `kontain_tasks_pending` reports (the task queue calls this when it
 * starts). One source per process; the returned function unregisters it, if it is still
 * the current one.
 */
export function setTasksPendingSource(fn: TasksPendingSource): () => void {
  tasksPendingSource = fn;
  return () => {
    if (tasksPendingSource === fn) tasksPendingSource = undefined;
  };
}

/** One app's metrics. Each app has its own registry, so several servers in one process (tests) never clash. */
export interface Metrics {
  /** Counts requests and bytes by service and status once a response is done. Mount after the request logger. */
  readonly middleware: RequestHandler;
  /** What the middleware does, for a response answered before Express: `fields` is read once it is done. */
  track(res: ServerResponse, fields: () => RequestLogFields | undefined): void;
  /** What track counts, for a response about to be written in one call: its status (499 if the client has gone) and `bytes` of body. */
  countAnswer(service: string, status: number, bytes: number): void;
  /** `GET /metrics` in the Prometheus text format. */
  readonly handler: RequestHandler;
  /** Time a generator took to answer a tag (cache hits included). */
  observeGeneration(service: string, seconds: number): void;
  /** A ContentStore.cached lookup, by the pointer's service. */
  countCacheLookup(service: string, result: 'hit' | 'miss'): void;
  /** Loads prom-client now rather than on first use (the server calls this once it has started). */
  load(): Promise<void>;
}

/**
 * Requests and bytes by service, kept in plain numbers and added to the Prometheus
 * counters when they are read: prom-client's inc with labels cost more than the rest of a
 * ready manifest answer (bench/static: about a tenth of its instructions, with the
 * listener it ran in). Bounded by services × statuses.
 */
class RequestTally {
  private readonly requests = new Map<string, Map<number, number>>();
  private readonly bytes = new Map<string, number>();

  add(service: string, status: number, bytes: number): void {
    let byStatus = this.requests.get(service);
    if (!byStatus) this.requests.set(service, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    if (bytes > 0) this.bytes.set(service, (this.bytes.get(service) ?? 0) + bytes);
  }

  /** Adds what was tallied to the counters and starts again. */
  flush(requests: Counter<'service' | 'status'>, bytesServed: Counter<'service'>): void {
    for (const [service, byStatus] of this.requests) {
      for (const [status, count] of byStatus) requests.inc({ service, status: String(status) }, count);
    }
    for (const [service, bytes] of this.bytes) bytesServed.inc({ service }, bytes);
    this.requests.clear();
    this.bytes.clear();
  }
}

interface Instruments {
  registry: Registry;
  cache: Counter<'service' | 'result'>;
}

/**
 * The metrics, with prom-client (and the Node modules it loads: zlib, https, cluster, ...,
 * about a fifth of a cold start) loaded on first use instead of at start. What is counted
 * before it is loaded waits in order and is applied as it loads; a scrape waits for it too,
 * so /metrics never misses a count.
 */
export function createMetrics(): Metrics {
  const tally = new RequestTally();
  const generation = new TallyHistogram(
    'kontain_generation_seconds',
    'Time to answer a manifest request by tag, by service: building the image, or finding it cached.',
    'service',
    // From cache hits (milliseconds) to source builds (minutes).
    [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
  );
  let instruments: Instruments | undefined;
  let loading: Promise<Instruments> | undefined;
  const waiting: Array<(use: Instruments) => void> = [];

  const load = (): Promise<Instruments> =>
    // `.default`: prom-client is CommonJS; the bundle's chunk of it exports module.exports alone.
    (loading ??= import('prom-client').then(
      ({ default: client }) => {
        instruments = createInstruments(client, tally, generation);
        for (const apply of waiting.splice(0)) apply(instruments);
        return instruments;
      },
      (err: unknown) => {
        loading = undefined; // the next use tries again
        throw err;
      },
    ));
  const use = (apply: (use: Instruments) => void): void => {
    if (instruments) return apply(instruments);
    waiting.push(apply);
    // A failure to load is the scrape's to report; the counts wait for a load that succeeds.
    if (!loading) load().catch(() => undefined);
  };

  const track = (res: ServerResponse, fields: () => RequestLogFields | undefined): void => {
    const bytesSent = responseBytes(res);
    let done = false;
    const record = () => {
      if (done) return;
      done = true;
      // The router fills the request-log fields; read them only now, when they are set.
      const status = res.writableFinished ? res.statusCode : 499; // as the request log counts it
      tally.add(fields()?.service ?? NO_SERVICE, status, bytesSent());
    };
    res.on('finish', record);
    res.on('close', record);
  };

  // Counted as it is written, without a listener (one per response was a measurable share
  // of a ready answer).
  const countAnswer = (service: string, status: number, bytes: number): void => tally.add(service, status, bytes);

  const middleware = (_req: Request, res: Response, next: NextFunction): void => {
    track(res, () => res.locals.fields as RequestLogFields | undefined);
    next();
  };

  const handler = (_req: Request, res: Response, next: NextFunction): void => {
    load()
      .then(({ registry }) =>
        registry.metrics().then((text) => {
          res.setHeader('Content-Type', registry.contentType);
          res.setHeader('Cache-Control', 'no-store');
          res.end(text);
        }),
      )
      .catch(next);
  };

  return {
    middleware,
    track,
    countAnswer,
    handler,
    observeGeneration: (service, seconds) => generation.observe(service, seconds),
    countCacheLookup: (service, result) => use(({ cache }) => cache.inc({ service, result })),
    load: () => load().then(() => undefined),
  };
}

function createInstruments({ Counter, Gauge, Registry, collectDefaultMetrics }: typeof import('prom-client'), tally: RequestTally, generation: TallyHistogram): Instruments {
  const registry = new Registry();
  registry.registerMetric(generation.asMetric());
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'kontain_tasks_pending',
    help: 'Delayed tasks waiting to run.',
    registers: [registry],
    async collect() {
      this.set(tasksPendingSource ? await tasksPendingSource() : 0);
    },
  });
  // Either counter read first takes both up to date.
  const flush = () => tally.flush(requests, bytesServed);
  const requests: Counter<'service' | 'status'> = new Counter({
    name: 'kontain_requests_total',
    help: 'HTTP requests by service (host) and status; 499 means the client went away first.',
    labelNames: ['service', 'status'] as const,
    registers: [registry],
    collect: flush,
  });
  const bytesServed: Counter<'service'> = new Counter({
    name: 'kontain_bytes_served_total',
    help: 'Response body bytes sent by the app, by service (blobs redirected to a bucket are not counted).',
    labelNames: ['service'] as const,
    registers: [registry],
    collect: flush,
  });
  return {
    registry,
    cache: new Counter({
      name: 'kontain_cache_total',
      help: 'Lookups of cached images (pointers), by service and result (hit or miss).',
      labelNames: ['service', 'result'] as const,
      registers: [registry],
    }),
  };
}
