import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ContentStore } from '../content/store.js';
import { createGenerators } from '../generators/index.js';
import { createBackend } from '../storage/index.js';
import { createApp } from './app.js';

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
  const store = new ContentStore(backend, { manifestCacheBytes: config.manifestCacheBytes, pointerTTLms: config.ttlSeconds * 1000 });
  const generators = createGenerators({ store, config, log });
  const app = createApp({ config, store, generators, log });
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
  return {
    server,
    port,
    store,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
