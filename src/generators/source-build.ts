/**
 * What every host that builds a git repository shares (kaniko, buildpack): the name
 * grammar `<host>/<owner>/<repo>[/<dir>...]:<rev>`, the KONTAIN_BUILD_ALLOW check, the
 * key of a source (base, repository, commit, directory), a bounded checkout into a fresh
 * directory, and the registry answer for each failure of the source or the build.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { isAllowedRepository } from '../builds/allow.js';
import { BuildFailed, BuildOutputRefused, BuildTimedOut, ExecutorUnavailable, type BuildExecutor, type BuildRecipe, type BuildRequest, type RemoteBuild } from '../builds/executor.js';
import type { JobContext, JobContinuation } from '../builds/facility.js';
import type { Descriptor } from '../oci/types.js';
import type { BuildsConfig, Config } from '../config.js';
import { GitSourceNotFound, GitSourceRefused, GitSourceUnavailable, type GitSource } from '../git/source.js';
import { ACTIONABLE_STATUS, RegistryError } from '../registry/errors.js';
import { Semaphore } from '../util/semaphore.js';
import { upstreamFailure } from './upstream.js';

export interface SourceTarget {
  owner: string;
  repo: string;
  /** The directory within the repository ('' for its root). */
  dir: string;
  /** `owner/repo`. */
  name: string;
}

/** What every source build's task carries: the repository, directory and commit. */
export interface SourcePayload {
  owner: string;
  repo: string;
  dir: string;
  commit: string;
  /** sourceKeyOf(…): names the build's working directories and cloud resources. */
  sourceKey: string;
}

/** The executor's request for a recipe (without its context directory), with the configured bounds and the job's log. */
export function executorRequest(config: Config, context: JobContext, id: string, recipe: BuildRecipe): Omit<BuildRequest, 'contextDir'> {
  return {
    id,
    recipe,
    insecureRegistries: config.insecureRegistries,
    timeoutMs: config.builds.timeoutSeconds * 1000,
    maxOutputBytes: config.builds.maxOutputBytes,
    onLine: context.line,
    onProgress: context.progress,
  };
}

/**
 * A source build's task on the executor. The context directory is prepared (and may
 * refine the recipe, e.g. with the commit's time) in a build slot, then built here; an
 * executor whose builds run elsewhere (Cloud Build) is given the build, and later tasks
 * (`{ again }`) each take one look at it, so no instance waits on it.
 */
export async function runSourceBuild(
  executor: BuildExecutor,
  slots: Semaphore,
  context: JobContext,
  request: Omit<BuildRequest, 'contextDir'>,
  prepare: () => Promise<{ dir: string; recipe?: BuildRecipe }>,
): Promise<Descriptor | JobContinuation> {
  const remote = context.resume as RemoteBuild | undefined;
  if (remote && executor.poll) {
    const image = await executor.poll(remote, request);
    return image ?? { again: { afterSeconds: executor.pollSeconds ?? 2, state: remote } };
  }
  return slots.run(async () => {
    const prepared = await prepare();
    try {
      const full: BuildRequest = { ...request, recipe: prepared.recipe ?? request.recipe, contextDir: prepared.dir };
      if (!executor.submit) return await executor.build(full);
      const submitted = await executor.submit(full);
      return { again: { afterSeconds: executor.pollSeconds ?? 2, state: submitted } };
    } finally {
      await rm(prepared.dir, { recursive: true, force: true });
    }
  });
}

/** The repository a name asks for, if it may be built here (KONTAIN_BUILD_ALLOW). */
export function sourceTarget(service: string, repository: string, builds: BuildsConfig): SourceTarget {
  const [owner, repo, ...dirParts] = repository.split('/');
  if (!owner || !repo) throw new RegistryError('NAME_INVALID', `${service}/${repository}: name a git repository as ${service}/OWNER/REPO[/DIR]:REVISION`);
  const name = `${owner}/${repo}`;
  if (!isAllowedRepository(builds.allow, name)) {
    throw new RegistryError('DENIED', `${name} may not be built here: builds run the repository's own code, and this server builds only repositories listed in KONTAIN_BUILD_ALLOW (${builds.allow.join(', ') || 'none'})`);
  }
  return { owner, repo, dir: dirParts.join('/'), name };
}

/** Names a commit's directory of a repository at the configured git base. */
export function sourceKeyOf(builds: BuildsConfig, target: SourceTarget, commit: string): string {
  return sha256Hex(`${builds.gitBase}\n${target.name}\n${commit}\n${target.dir}`);
}

/** `owner/repo/dir@abc1234`, as messages name a build. */
export function sourceLabel(target: SourceTarget, commit: string): string {
  return `${target.name}${target.dir ? `/${target.dir}` : ''}@${commit.slice(0, 7)}`;
}

/**
 * The commit's directory checked out into a fresh directory under the builds' work
 * directory (at `into` within it, when given); removed again if the checkout fails.
 */
export async function checkoutSource(
  git: GitSource,
  builds: BuildsConfig,
  target: Pick<SourceTarget, 'owner' | 'repo' | 'dir'>,
  commit: string,
  into = '',
): Promise<{ dir: string; commitTime: number }> {
  await mkdir(builds.workDir, { recursive: true });
  const dir = await mkdtemp(path.join(builds.workDir, 'src-'));
  try {
    const { commitTime } = await git.checkout(target.owner, target.repo, commit, target.dir, path.join(dir, into));
    return { dir, commitTime };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

const slots = new WeakMap<BuildsConfig, Semaphore>();

/** The build slots of this process (KONTAIN_BUILD_MAX_CONCURRENT), shared by every building host. */
export function buildSlots(builds: BuildsConfig): Semaphore {
  let semaphore = slots.get(builds);
  if (!semaphore) slots.set(builds, (semaphore = new Semaphore(builds.maxConcurrent)));
  return semaphore;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The registry answer for a failure of the source, the build or an image it names; undefined for the unexpected. */
export function sourceBuildFailure(err: unknown): RegistryError | undefined {
  if (err instanceof RegistryError) return err;
  if (err instanceof GitSourceNotFound) return new RegistryError('MANIFEST_UNKNOWN', err.message);
  if (err instanceof GitSourceRefused) return new RegistryError('DENIED', err.message);
  if (err instanceof GitSourceUnavailable) return new RegistryError('UNAVAILABLE', err.message, { status: ACTIONABLE_STATUS.upstreamFailed });
  // The build ran and failed, or broke a bound: the repository's to fix, so remembered.
  if (err instanceof BuildFailed || err instanceof BuildTimedOut || err instanceof BuildOutputRefused) {
    return new RegistryError('MANIFEST_UNKNOWN', err.message, { status: 422 });
  }
  if (err instanceof ExecutorUnavailable) return new RegistryError('UNAVAILABLE', err.message, { status: 503 });
  return upstreamFailure(err);
}
