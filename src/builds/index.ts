import type { Config } from '../config.js';
import type { ContentStore } from '../content/store.js';
import type { Logger } from 'pino';
import type { TaskQueue } from '../tasks/queue.js';
import { BuildahExecutor } from './buildah.js';
import { CloudBuildExecutor } from './cloud-build.js';
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
    leaseTtlMs: config.leaseTTLSeconds * 1000,
  });
}

/** The executor KONTAIN_BUILD_EXECUTOR selects. */
export function createBuildExecutor({ store, config }: BuildDependencies): BuildExecutor {
  const builds = config.builds;
  if (builds.executor === 'cloudbuild') {
    if (config.store.kind !== 'gcs') throw new Error('the Cloud Build executor needs a GCS store');
    return new CloudBuildExecutor({
      store,
      project: builds.cloudBuild.project!,
      location: builds.cloudBuild.location,
      builderImage: builds.cloudBuild.builderImage,
      bucket: config.store.bucket,
      prefix: config.store.prefix,
      workDir: builds.workDir,
      endpoint: builds.cloudBuild.endpoint,
      pollMs: builds.cloudBuild.endpoint ? 200 : 2000,
    });
  }
  return new BuildahExecutor({
    store,
    buildah: builds.buildah,
    workDir: builds.workDir,
    authFile: config.dockerConfigPath,
    // buildah's vfs storage holds every layer unpacked, several times over.
    maxDiskBytes: builds.maxOutputBytes * 4 + builds.maxSourceBytes,
  });
}
