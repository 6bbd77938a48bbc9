import type { Config } from '../config.js';
import type { ContentStore } from '../content/store.js';
import type { Logger } from 'pino';
import type { TaskQueue } from '../tasks/queue.js';
import { BuildahExecutor } from './buildah.js';
import type { BuildExecutor } from './executor.js';
import { BuildFacility } from './facility.js';

export { BuildFacility } from './facility.js';
export type { BuildExecutor } from './executor.js';

interface BuildDependencies {
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
    // A build past its time limit (plus the source fetch and the import) was lost.
    staleAfterMs: (builds.timeoutSeconds + 600) * 1000,
  });
}

/** The executor KONTAIN_BUILD_EXECUTOR selects. */
export function createBuildExecutor({ store, config }: BuildDependencies): BuildExecutor {
  const builds = config.builds;
  if (builds.executor === 'cloudbuild') throw new Error('KONTAIN_BUILD_EXECUTOR=cloudbuild is not available yet');
  return new BuildahExecutor({
    store,
    buildah: builds.buildah,
    workDir: builds.workDir,
    authFile: config.dockerConfigPath,
    // buildah's vfs storage holds every layer unpacked, several times over.
    maxDiskBytes: builds.maxOutputBytes * 4 + builds.maxSourceBytes,
  });
}
