import type { Config } from '../config.js';
import type { ContentStore } from '../content/store.js';
import type { Logger } from 'pino';
import type { TaskQueue } from '../tasks/queue.js';
import { BuildFacility } from './facility.js';

export { BuildFacility } from './facility.js';
export type { BuildExecutor } from './executor.js';

export interface BuildDependencies {
  store: ContentStore;
  config: Config;
  log: Logger;
  tasks?: TaskQueue;
}

/** The slow-work facility with the configured hold and memory of failures. */
export function createBuildFacility({ store, config, log, tasks }: BuildDependencies): BuildFacility {
  const builds = config.builds;
  return new BuildFacility({
    store,
    tasks,
    log,
    holdMs: builds.holdMs,
    failureTtlMs: builds.failureTtlSeconds * 1000,
    leaseTtlMs: config.leaseTTLSeconds * 1000,
  });
}
