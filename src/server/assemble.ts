import type { RequestListener } from 'node:http';
import type { Express } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ContentStore } from '../content/store.js';
import { createGenerators } from '../generators/index.js';
import { createBuildFacility } from '../builds/index.js';
import type { StorageBackend } from '../storage/backend.js';
import type { RememberedAnswers } from './connection-entry.js';
import { fastEntry } from './fast-entry.js';
import { startGate } from './start-gate.js';
import { ManifestServer } from '../registry/manifests.js';
import type { Metrics } from './metrics.js';
import { buildLifetimes, removeCrashLeftovers, startPeriodicGc, type PeriodicGc } from '../content/gc.js';
import { createTaskEndpoint, createTaskQueue, type TaskEndpointDependencies } from '../tasks/index.js';
import type { TaskQueue } from '../tasks/queue.js';

/** Everything behind the server's listener, assembled once it listens (see start-gate.ts). */
export interface Assembled {
  /**
   * The request entry: the fast entry in front of the Express app. It answers manifests at
   * once; what only Express answers waits for `app`.
   */
  entry: RequestListener;
  /** What the fast entry remembers, for the connection entry (connection-entry.ts). */
  remembered: RememberedAnswers;
  /** The Express app, once loaded (it rejects if Express could not be loaded). */
  app: Promise<Express>;
  store: ContentStore;
  tasks: TaskQueue;
  /** Starts periodic garbage collection and the task queue; returns what stops the collection. */
  start(): Promise<PeriodicGc>;
}

/** Wires backend → content store → generators → app, over a store that has passed its probe. */
export async function assembleServer(
  config: Config,
  backend: StorageBackend,
  log: Logger,
  metrics: Metrics,
  dependencies: { tasks?: TaskEndpointDependencies },
): Promise<Assembled> {
  // Express and what only it serves are about half of the JavaScript loaded here, and
  // manifest GET/HEAD, what a cold pull asks right after /v2/, do not need them: they load
  // alongside the rest, and requests only Express answers wait for them behind a gate.
  const appModule = import('./app.js');
  appModule.catch(() => undefined); // reported through `app` below, if the rest assembles
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
  try {
    const builds = createBuildFacility({ store, config, log, tasks });
    const generators = createGenerators({ store, config, log, tasks, builds });
    const taskEndpoint = await createTaskEndpoint(config, tasks, log, dependencies.tasks);
    const app = appModule.then(({ createApp }) => createApp({ config, store, generators, log, metrics, taskEndpoint, builds }));
    const expressGate = startGate({ domain: config.domain, project: config.project, log, metrics });
    app.then(expressGate.open, expressGate.fail);
    // Manifest and static blob GET/HEAD are answered in front of Express (fast-entry.ts).
    const manifests = new ManifestServer({ store, onGeneration: metrics.observeGeneration });
    const { listener: entry, remembered } = fastEntry(expressGate.listener, { generators, domain: config.domain, project: config.project, log, metrics, manifests, store });
    const start = async () => {
      const gc = startPeriodicGc(store, { intervalMs: config.gcIntervalSeconds * 1000, graceMs: config.gcGraceSeconds * 1000, ...buildLifetimes(config), log });
      // The embedded queue runs overdue tasks at once, and their images should be servable as they appear.
      await tasks.start();
      return gc;
    };
    return { entry, remembered, app, store, tasks, start };
  } catch (err) {
    await tasks.stop();
    throw err;
  }
}
