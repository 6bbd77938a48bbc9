/**
 * One build executor interface for every host that builds from source: "run this build
 * and hand me an OCI image in the store". Two implementations: buildah on this machine
 * (buildah.ts) and Cloud Build (cloud-build.ts). The kaniko host builds Dockerfiles; the
 * buildpack host (a builder image running the CNB lifecycle) and the nix host add their
 * own recipe kinds here and in each executor.
 */
import type { Descriptor } from '../oci/types.js';

/** What to build: a Dockerfile in a context directory (the only kind so far). */
export interface DockerfileRecipe {
  kind: 'dockerfile';
  /** The Dockerfile's text, as it should be built (base images pinned by digest). */
  dockerfile: string;
  /** `created` and file times in the image, so a rebuild of the same commit gives the same bytes. */
  timestamp?: number;
}

/**
 * A Cloud Native Buildpacks build: the builder image's own lifecycle (`/cnb/lifecycle/creator`)
 * run on the context's `app/` directory, exporting an OCI layout (see buildpack-script.ts).
 * The context also holds the run image as an OCI layout under `layout/`, put there by kontain.
 */
export interface BuildpackRecipe {
  kind: 'buildpack';
  /** The builder image, pinned by digest. */
  builder: string;
  /** The run image as the creator is told it (`-run-image`), pinned by digest; its layout is in the context. */
  runImage: string;
  /** The Platform API the builder's lifecycle supports that the build speaks (`CNB_PLATFORM_API`). */
  platformApi: string;
  /** The build user of the builder image (CNB_USER_ID, CNB_GROUP_ID). */
  uid: number;
  gid: number;
  /** SOURCE_DATE_EPOCH: `created` in the image, so a rebuild of the same commit gives the same config. */
  timestamp?: number;
}

export type BuildRecipe = DockerfileRecipe | BuildpackRecipe;

export interface BuildRequest {
  /** Names the build in logs, work directories and cloud resources (`[a-z0-9-]`). */
  id: string;
  /** The build context: a local directory the executor may read (and upload). */
  contextDir: string;
  recipe: BuildRecipe;
  /** Registries (`host[:port]`) the build may pull from over plain HTTP. */
  insecureRegistries: readonly string[];
  timeoutMs: number;
  /** Largest image (compressed blobs) accepted into the store. */
  maxOutputBytes: number;
  /** Each line of the build's output, as it comes. */
  onLine(line: string): void;
  /** "step 3/7", as the builder reports it. */
  onProgress?(progress: string): void;
  /** The build is no longer wanted: stop it. */
  signal?: AbortSignal;
}

export interface BuildExecutor {
  readonly kind: string;
  /** Runs the build and returns the image's manifest, with all its blobs in the store. */
  build(request: BuildRequest): Promise<Descriptor>;
  /**
   * Executors whose builds run elsewhere (Cloud Build) also split a build in two, so the
   * serving instance holds no CPU while it runs (on Cloud Run none is given after a
   * response): `submit` starts it and returns what names it; `poll`, called by later tasks
   * every `pollSeconds`, returns the image once it is done, undefined while it runs.
   */
  submit?(request: BuildRequest): Promise<RemoteBuild>;
  poll?(remote: RemoteBuild, request: Omit<BuildRequest, 'contextDir'>): Promise<Descriptor | undefined>;
  readonly pollSeconds?: number;
}

/** A build running elsewhere, as a task carries it between looks. */
export interface RemoteBuild {
  [key: string]: string | number;
  buildId: string;
  /** When it was submitted (ms since the epoch): the time limit counts from here. */
  submitted: number;
}

/** The build itself failed (a RUN step, a bad Dockerfile): the user's to fix. */
export class BuildFailed extends Error {
  override name = 'BuildFailed';
}

/** The build took longer than its time limit and was stopped. */
export class BuildTimedOut extends Error {
  override name = 'BuildTimedOut';
}

/** The build's result broke a bound (output size). */
export class BuildOutputRefused extends Error {
  override name = 'BuildOutputRefused';
}

/** The executor could not run at all (buildah missing, Cloud Build unreachable). */
export class ExecutorUnavailable extends Error {
  override name = 'ExecutorUnavailable';
}

/** Matches a builder's step lines: buildah's `STEP 3/7: RUN …`, kaniko's and docker's `Step 3/7 : …`. */
export function stepOf(line: string): string | undefined {
  const match = /^(?:\[\d+\/\d+\] )?STEP (\d+)\/(\d+)\s*:/i.exec(line);
  return match ? `step ${match[1]}/${match[2]}` : undefined;
}
