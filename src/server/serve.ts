import type { Server } from 'node:http';
import type { Express } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { ContentStore } from '../content/store.js';
import { createBackend } from '../storage/index.js';
import { installConnectionEntry } from './connection-entry.js';
import { createLimitedServer } from './connections.js';
import { probeStore } from '../storage/probe.js';
import { StartupError } from './startup-error.js';
import { createMetrics } from './metrics.js';
import { startGate } from './start-gate.js';
import type { TaskEndpointDependencies } from '../tasks/index.js';
import type { TaskQueue } from '../tasks/queue.js';

export interface RunningServer {
  server: Server;
  port: number;
  store: ContentStore;
  tasks: TaskQueue;
  /** The Express app behind the fast entry (tests serve it alone to compare the two paths). */
  app: Express;
  /** Stops accepting connections, lets in-flight requests finish, then resolves. */
  close(): Promise<void>;
}

/**
 * Listens, then probes the store and loads and wires the rest (assemble.ts) while the
 * start gate answers `GET /v2/` and holds every other request until all of it is ready.
 * Resolves once it is; rejects (a StartupError for what an operator can fix, such as a
 * store that cannot be used) if any part fails, and the server is closed again.
 */
export async function startServer(
  config: Config,
  log: Logger,
  host = '0.0.0.0',
  /** Test hooks: the signing keys the task endpoint trusts. */
  dependencies: { tasks?: TaskEndpointDependencies } = {},
): Promise<RunningServer> {
  const backend = await createBackend(config);
  // Nothing that uses the store runs before the probe has passed: the gate holds every
  // request but the base route until then (and until the rest is loaded, alongside).
  const probed = probeStore(backend).catch((err: unknown) => {
    throw new StartupError(`KONTAIN_STORE (${backend.description}) cannot be used: ${(err as Error).message}`);
  });
  probed.catch(() => undefined); // awaited after listen; a failure is reported there
  // One metrics registry per server: the store and the app report to the same one.
  const metrics = createMetrics();
  const gate = startGate({ domain: config.domain, project: config.project, log, metrics });
  const server = createLimitedServer(gate.listener, config, log);
  const connections = installConnectionEntry(server, { headersTimeoutMs: config.headersTimeoutSeconds * 1000, log });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, host, () => resolve());
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new StartupError(`port ${config.port} on ${host} is already in use by another program; stop it or set PORT to a free port`);
    if (code === 'EACCES') throw new StartupError(`port ${config.port} on ${host} may not be opened by this user; set PORT to one above 1023`);
    throw err;
  }
  // What a cold Cloud Run instance makes its first client wait for: its base route at least, all of it at most.
  const listeningMs = Math.round(performance.now());
  const closeServer = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      connections.closeIdle();
    });
  let assembled;
  let app;
  try {
    const [{ assembleServer }] = await Promise.all([import('./assemble.js'), probed]);
    assembled = await assembleServer(config, backend, log, metrics, dependencies);
    // Manifests are served from here on; Express may still be loading (assemble.ts).
    gate.open(assembled.entry);
    connections.use(assembled.remembered);
    app = await assembled.app.catch(async (err: unknown) => {
      await assembled!.tasks.stop();
      throw err;
    });
  } catch (err) {
    gate.fail();
    // Not awaited: a held connection kept alive after its 503 would delay the exit by its idle timeout.
    void closeServer();
    throw err;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info({ port, store: backend.description, domain: config.domain || undefined, startupMs: listeningMs, readyMs: Math.round(performance.now()) }, 'kontain serving');
  const gc = await assembled.start();
  // Not needed until a request is counted or /metrics is scraped: loaded now, off the start path.
  void metrics.load().catch((err: unknown) => log.warn({ err }, 'metrics could not be loaded'));
  const { store, tasks } = assembled;
  return {
    server,
    port,
    store,
    tasks,
    app,
    close: () =>
      Promise.all([
        gc.stop(),
        // Clears the embedded queue's timers; its pending tasks stay in the store for the next start.
        tasks.stop(),
        closeServer(),
      ]).then(() => undefined),
  };
}
