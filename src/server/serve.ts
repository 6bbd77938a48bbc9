import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ContentStore } from '../content/store.js';
import { createGenerators } from '../generators/index.js';
import { createBackend } from '../storage/index.js';
import { createApp } from './app.js';
import { createMetrics } from './metrics.js';
import { startPeriodicGc } from '../content/gc.js';

export interface RunningServer {
  server: Server;
  port: number;
  store: ContentStore;
  /** Stops accepting connections, lets in-flight requests finish, then resolves. */
  close(): Promise<void>;
}

/** Wires config → backend → content store → generators → app, and listens. */
export async function startServer(config: Config, log: Logger, host = '0.0.0.0'): Promise<RunningServer> {
  const backend = await createBackend(config);
  // One metrics registry per server: the store and the app report to the same one.
  const metrics = createMetrics();
  const store = new ContentStore(backend, {
    manifestCacheBytes: config.manifestCacheBytes,
    pointerTTLms: config.ttlSeconds * 1000,
    onCacheLookup: metrics.countCacheLookup,
  });
  const generators = createGenerators({ store, config, log });
  const app = createApp({ config, store, generators, log, metrics });
  const server = createServer(app);
  // Generating a large image can take a while before the first byte: no socket timeout.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info({ port, store: backend.description, domain: config.domain || undefined }, 'kontain serving');
  const gc = startPeriodicGc(store, { intervalMs: config.gcIntervalSeconds * 1000, graceMs: config.gcGraceSeconds * 1000, log });
  return {
    server,
    port,
    store,
    close: () =>
      Promise.all([
        gc.stop(),
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        }),
      ]).then(() => undefined),
  };
}
