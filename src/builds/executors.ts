// Kept apart from the facility (builds/index.ts), which every server makes at start: the
// executors and what they import are loaded with the first host that builds (kaniko).
import { BuildahExecutor } from './buildah.js';
import { CloudBuildExecutor } from './cloud-build.js';
import type { BuildExecutor } from './executor.js';
import type { BuildDependencies } from './index.js';

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
