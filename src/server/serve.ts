import type { Server } from 'node:http';
import type { Express } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ContentStore } from '../content/store.js';
import { createGenerators } from '../generators/index.js';
import { createBuildFacility } from '../builds/index.js';
import { createBackend } from '../storage/index.js';
import { createApp } from './app.js';
import { createLimitedServer } from './connections.js';
import { fastEntry } from './fast-entry.js';
import { ManifestServer } from '../registry/manifests.js';
import { probeStore } from '../storage/probe.js';
import { StartupError } from './startup-error.js';
import { createMetrics } from './metrics.js';
import { buildLifetimes, removeCrashLeftovers, startPeriodicGc } from '../content/gc.js';
import { createTaskEndpoint, createTaskQueue, type TaskEndpointDependencies } from '../tasks/index.js';
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

/** Wires config → backend → content store → generators → app, and listens. */
export async function startServer(
  config: Config,
  log: Logger,
  host = '0.0.0.0',
  /** Test hooks: the signing keys the task endpoint trusts. */
  dependencies: { tasks?: TaskEndpointDependencies } = {},
): Promise<RunningServer> {
  const backend = await createBackend(config);
  try {
    await probeStore(backend);
  } catch (err) {
    throw new StartupError(`KONTAIN_STORE (${backend.description}) cannot be used: ${(err as Error).message}`);
  }
  // One metrics registry per server: the store and the app report to the same one.
  const metrics = createMetrics();
  const store = new ContentStore(backend, {
    manifestCacheBytes: config.manifestCacheBytes,
    pointerTTLms: config.ttlSeconds * 1000,
    leaseTTLms: config.leaseTTLSeconds * 1000,
    onCacheLookup: metrics.countCacheLookup,
  });
  // What a crashed predecessor left (partial uploads, flatten spools) goes before any new work.
  const leftovers = await removeCrashLeftovers(store, config.gcGraceSeconds * 1000);
  if (leftovers.removed > 0) log.info({ removed: leftovers.removed, bytes: leftovers.bytes }, 'removed crash leftovers');
  const tasks = await createTaskQueue(config, backend, log);
  const builds = createBuildFacility({ store, config, log, tasks });
  const generators = createGenerators({ store, config, log, tasks, builds });
  const taskEndpoint = await createTaskEndpoint(config, tasks, log, dependencies.tasks);
  const app = createApp({ config, store, generators, log, metrics, taskEndpoint, builds });
  // Cached manifest GET/HEAD are answered in front of Express (fast-entry.ts).
  const manifests = new ManifestServer({ store, onGeneration: metrics.observeGeneration });
  const entry = fastEntry(app, { generators, domain: config.domain, project: config.project, log, metrics, manifests });
  const server = createLimitedServer(entry, config, log);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, host, () => resolve());
    });
  } catch (err) {
    await tasks.stop();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new StartupError(`port ${config.port} on ${host} is already in use by another program; stop it or set PORT to a free port`);
    if (code === 'EACCES') throw new StartupError(`port ${config.port} on ${host} may not be opened by this user; set PORT to one above 1023`);
    throw err;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  // startupMs: process start to listening, what a cold Cloud Run instance makes its first client wait.
  log.info({ port, store: backend.description, domain: config.domain || undefined, startupMs: Math.round(performance.now()) }, 'kontain serving');
  const gc = startPeriodicGc(store, { intervalMs: config.gcIntervalSeconds * 1000, graceMs: config.gcGraceSeconds * 1000, ...buildLifetimes(config), log });
  // After listening: the embedded queue runs overdue tasks at once, and their images
  // should be servable as they appear.
  await tasks.start();
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
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        }),
      ]).then(() => undefined),
  };
}
