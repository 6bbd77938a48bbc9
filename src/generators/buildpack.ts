import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.js';
import { BuilderUnusable, inspectBuilder, layoutReference, platformImage, type BuilderImage } from '../builds/builder-image.js';
import { APP_DIR, LAYOUT_DIR } from '../builds/buildpack-script.js';
import type { BuildExecutor, BuildpackRecipe } from '../builds/executor.js';
import type { BuildFacility, JobContext, JobContinuation } from '../builds/facility.js';
import { writeImageLayout } from '../builds/image-layout-writer.js';
import type { GitSource } from '../git/source.js';
import type { Descriptor } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import type { RegistryClient } from '../remote/client.js';
import { formatReference, InvalidReferenceError, parseReference } from '../remote/reference.js';
import type { Semaphore } from '../util/semaphore.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import { buildSlots, checkoutSource, executorRequest, runSourceBuild, type SourcePayload, sha256Hex, sourceBuildFailure, sourceKeyOf, sourceLabel, sourceTarget } from './source-build.js';

const SERVICE = 'buildpack';
/** Builder and run images looked at, by the digest their tag named: a few at most. */
const MAX_REMEMBERED_IMAGES = 16;

/** The work a build task carries: everything needed to build on any instance. */
interface BuildpackPayload extends SourcePayload {
  /** The builder and its run image, pinned by digest. */
  builder: string;
  runImage: string;
  platformApi: string;
  uid: number;
  gid: number;
}

/**
 * `buildpack`: `buildpack/<owner>/<repo>[/<dir>...]:<rev>` is the image Cloud Native
 * Buildpacks build from the git repository at that revision: the builder image
 * (KONTAIN_BUILDPACK_BUILDER) runs its own lifecycle, `/cnb/lifecycle/creator`, with the
 * run image its metadata names, and the image the lifecycle exports (its layers,
 * `io.buildpacks.*` labels, entrypoint) is served as it is. Source, allowlist, limits and
 * slow-build answers are the kaniko host's (source-build.ts, the build facility); the
 * image is cached by commit, directory, builder digest and run image digest.
 */
export class BuildpackGenerator implements Generator {
  readonly service = SERVICE;
  private readonly config: Config;
  private readonly slots: Semaphore;
  private readonly builders = new Map<string, BuilderImage>();
  private readonly runImages = new Map<string, string>();

  constructor(
    context: GeneratorContext,
    private readonly client: RegistryClient,
    private readonly executor: BuildExecutor,
    private readonly facility: BuildFacility,
    private readonly git: GitSource,
  ) {
    this.config = context.config;
    this.slots = buildSlots(context.config.builds);
    facility.register(SERVICE, (payload, jobContext) => this.build(payload as BuildpackPayload, jobContext));
  }

  async manifest(request: TagRequest): Promise<Descriptor> {
    const target = sourceTarget(SERVICE, request.repository, this.config.builds);
    try {
      // The revision, the builder and its run image are asked of their servers at once.
      const [{ commit }, { builder, runImage }] = await Promise.all([
        this.git.resolve(target.owner, target.repo, request.tag),
        this.builder().then(async (builder) => ({ builder, runImage: await this.runImage(builder) })),
      ]);
      const sourceKey = sourceKeyOf(this.config.builds, target, commit);
      // Everything that decides the image's bytes: the source, the builder, the run image.
      const key = sha256Hex(JSON.stringify({ v: 1, sourceKey, builder: builder.digest, runImage, platformApi: builder.platformApi, executor: this.executor.kind }));
      const payload: BuildpackPayload = { owner: target.owner, repo: target.repo, dir: target.dir, commit, sourceKey, builder: builder.pinned, runImage, platformApi: builder.platformApi, uid: builder.uid, gid: builder.gid };
      return await this.facility.obtain({ kind: SERVICE, service: SERVICE, key, label: sourceLabel(target, commit), payload: { ...payload } }, { baseUrl: request.baseUrl, log: request.log });
    } catch (err) {
      throw buildpackFailure(err) ?? err;
    }
  }

  /** The configured builder as its tag names it now (one HEAD per pull; its config read once per digest). */
  private async builder(): Promise<BuilderImage> {
    const reference = this.config.builds.buildpackBuilder;
    const { digest } = await this.client.resolve(reference);
    const known = this.builders.get(digest);
    if (known) return known;
    const builder = await inspectBuilder(this.client, reference);
    remember(this.builders, digest, builder);
    return builder;
  }

  /** The builder's run image, pinned to this platform's manifest. */
  private async runImage(builder: BuilderImage): Promise<string> {
    const { digest } = await this.client.resolve(builder.runImage);
    const known = this.runImages.get(digest);
    if (known) return known;
    const pinned = formatReference((await platformImage(this.client, builder.runImage)).ref);
    remember(this.runImages, digest, pinned);
    return pinned;
  }

  /**
   * The build task's work (runSourceBuild): the source into `app/`, the run image as an OCI
   * layout into `layout/` (read by kontain's own client, so its address policy and
   * credentials hold), then the executor runs the builder's lifecycle on them.
   */
  private async build(payload: BuildpackPayload, context: JobContext): Promise<Descriptor | JobContinuation> {
    const builds = this.config.builds;
    const runLayout = layoutReference(parseReference(payload.runImage));
    const recipe: BuildpackRecipe = { kind: 'buildpack', builder: payload.builder, runImage: runLayout.name, platformApi: payload.platformApi, uid: payload.uid, gid: payload.gid };
    const id = `buildpack-${payload.sourceKey.slice(0, 12)}-${sha256Hex(`${payload.builder}\n${payload.runImage}`).slice(0, 8)}`;
    try {
      return await runSourceBuild(this.executor, this.slots, context, executorRequest(this.config, context, id, recipe), async () => {
        context.line(`kontain: fetching ${payload.owner}/${payload.repo} at ${payload.commit}`);
        const { dir, commitTime } = await checkoutSource(this.git, builds, payload, payload.commit, APP_DIR);
        try {
          context.line(`kontain: fetching the run image ${payload.runImage}`);
          const run = await platformImage(this.client, payload.runImage);
          await writeImageLayout(this.client, run, path.join(dir, LAYOUT_DIR, runLayout.path), builds.maxOutputBytes);
        } catch (err) {
          await rm(dir, { recursive: true, force: true });
          throw err;
        }
        context.line(`kontain: building ${payload.owner}/${payload.repo}${payload.dir ? `/${payload.dir}` : ''} at ${payload.commit} with ${payload.builder} (${this.executor.kind})`);
        return { dir, recipe: { ...recipe, timestamp: commitTime || undefined } };
      });
    } catch (err) {
      throw buildpackFailure(err) ?? err;
    }
  }
}

function remember<T>(map: Map<string, T>, key: string, value: T): void {
  if (map.size >= MAX_REMEMBERED_IMAGES) map.clear();
  map.set(key, value);
}

function buildpackFailure(err: unknown): RegistryError | undefined {
  if (err instanceof BuilderUnusable) return new RegistryError('UNAVAILABLE', `the buildpack builder (KONTAIN_BUILDPACK_BUILDER) cannot be used: ${err.message}`, { status: 503 });
  if (err instanceof InvalidReferenceError) return new RegistryError('UNAVAILABLE', `the buildpack builder (KONTAIN_BUILDPACK_BUILDER) or its run image is not an image reference: ${err.message}`, { status: 503 });
  return sourceBuildFailure(err);
}
