import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { BuildRecords } from '../content/build-records.js';
import type { Config } from '../config.js';
import type { BuildExecutor } from '../builds/executor.js';
import type { BuildFacility, JobContext, JobContinuation } from '../builds/facility.js';
import type { GitSource } from '../git/source.js';
import { DockerfileInvalid, parseDockerfile } from '../kaniko/dockerfile.js';
import type { Descriptor } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import type { RegistryClient } from '../remote/client.js';
import { formatReference, InvalidReferenceError, parseReference } from '../remote/reference.js';
import type { Semaphore } from '../util/semaphore.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import { buildSlots, checkoutSource, executorRequest, runSourceBuild, type SourcePayload, sha256Hex, sourceBuildFailure, sourceKeyOf, sourceLabel, sourceTarget } from './source-build.js';

const SERVICE = 'kaniko';
const MAX_DOCKERFILE_BYTES = 256 * 1024;
/** A checked-out source not claimed by a build within this long is removed. */
const PREPARED_TTL_MS = 60_000;

/** What a commit's directory holds for a build, remembered per commit (it never changes). */
interface SourceInfo {
  /** The Dockerfile's text, or null when the directory has none. */
  dockerfile: string | null;
  commitTime: number;
}

/** The work a build task carries: everything needed to build on any instance. */
interface KanikoPayload extends SourcePayload {
  /** The Dockerfile with its images pinned by digest. */
  dockerfile: string;
  commitTime: number;
}

/**
 * `kaniko`: `kaniko/<owner>/<repo>[/<dir>...]:<rev>` is the image that `<dir>/Dockerfile`
 * of the git repository `<KONTAIN_GIT_BASE>/<owner>/<repo>` builds at that revision (a
 * branch, a tag, a full or abbreviated commit; `latest` is the default branch). The
 * revision is resolved with `git ls-remote` on every pull and the Dockerfile's images
 * are resolved to digests; the image is cached by commit, directory, those digests and
 * the builder, so a pull rebuilds only when one of them moved. Builds go through the
 * build executor (buildah here, Cloud Build in production) and the slow-work facility
 * (a long build answers "building …, pull again"). Only repositories matching
 * KONTAIN_BUILD_ALLOW are built.
 */
export class KanikoGenerator implements Generator {
  readonly service = SERVICE;
  private readonly config: Config;
  private readonly records: BuildRecords;
  private readonly slots: Semaphore;
  /** Sources checked out while answering a pull, handed to the build that follows here. */
  private readonly prepared = new Map<string, { dir: string; timer: NodeJS.Timeout }>();

  constructor(
    context: GeneratorContext,
    private readonly client: RegistryClient,
    private readonly executor: BuildExecutor,
    private readonly facility: BuildFacility,
    private readonly git: GitSource,
  ) {
    this.config = context.config;
    this.records = new BuildRecords(context.store.backend);
    this.slots = buildSlots(context.config.builds);
    facility.register(SERVICE, (payload, jobContext) => this.build(payload as KanikoPayload, jobContext));
  }

  async manifest(request: TagRequest): Promise<Descriptor> {
    const target = sourceTarget(SERVICE, request.repository, this.config.builds);
    const { owner, repo, dir } = target;
    try {
      const { commit } = await this.git.resolve(owner, repo, request.tag);
      const sourceKey = sourceKeyOf(this.config.builds, target, commit);
      const source = await this.sourceInfo(owner, repo, commit, dir, sourceKey);
      const where = sourceLabel(target, commit);
      if (source.dockerfile === null) throw new RegistryError('MANIFEST_UNKNOWN', `${where} has no Dockerfile${dir ? ` in ${dir}` : ''}`);
      const dockerfile = await this.pinImages(source.dockerfile, where);
      // Everything that decides the image's bytes: the source, the pinned bases, the builder.
      const key = sha256Hex(JSON.stringify({ v: 1, sourceKey, dockerfile: sha256Hex(dockerfile), executor: this.executor.kind }));
      const payload: KanikoPayload = { owner, repo, dir, commit, dockerfile, commitTime: source.commitTime, sourceKey };
      return await this.facility.obtain({ kind: SERVICE, service: SERVICE, key, label: where, payload: { ...payload } }, { baseUrl: request.baseUrl, log: request.log });
    } catch (err) {
      throw sourceBuildFailure(err) ?? err;
    }
  }

  /** The commit's Dockerfile, read once per commit and directory (a fetch the first time). */
  private async sourceInfo(owner: string, repo: string, commit: string, dir: string, sourceKey: string): Promise<SourceInfo> {
    const known = await this.records.source<SourceInfo>(sourceKey);
    if (known) return known;
    const checkout = await this.checkout(owner, repo, commit, dir);
    let info: SourceInfo;
    try {
      info = { dockerfile: await readDockerfile(checkout.dir), commitTime: checkout.commitTime };
    } catch (err) {
      await rm(checkout.dir, { recursive: true, force: true });
      throw err;
    }
    await this.records.setSource(sourceKey, info);
    this.keepPrepared(sourceKey, checkout.dir);
    return info;
  }

  private checkout(owner: string, repo: string, commit: string, dir: string): Promise<{ dir: string; commitTime: number }> {
    return checkoutSource(this.git, this.config.builds, { owner, repo, dir }, commit);
  }

  private keepPrepared(sourceKey: string, dir: string): void {
    const previous = this.prepared.get(sourceKey);
    if (previous) this.dropPrepared(sourceKey);
    const timer = setTimeout(() => this.dropPrepared(sourceKey), PREPARED_TTL_MS);
    timer.unref();
    this.prepared.set(sourceKey, { dir, timer });
  }

  private dropPrepared(sourceKey: string): void {
    const entry = this.prepared.get(sourceKey);
    if (!entry) return;
    this.prepared.delete(sourceKey);
    clearTimeout(entry.timer);
    void rm(entry.dir, { recursive: true, force: true });
  }

  /** The Dockerfile with every image it pulls resolved (address policy, credentials) and pinned by digest. */
  private async pinImages(dockerfile: string, where: string): Promise<string> {
    let parsed;
    try {
      parsed = parseDockerfile(dockerfile);
    } catch (err) {
      if (err instanceof DockerfileInvalid) throw new RegistryError('MANIFEST_UNKNOWN', `${where}: ${err.message}`, { status: 422 });
      throw err;
    }
    const pins = new Map<string, string>();
    for (const image of parsed.images) {
      let ref;
      try {
        ref = parseReference(image);
      } catch (err) {
        if (err instanceof InvalidReferenceError) throw new RegistryError('MANIFEST_UNKNOWN', `${where}: the Dockerfile's image ${image}: ${err.message}`, { status: 422 });
        throw err;
      }
      const digest = ref.digest ?? (await this.client.resolve(ref)).digest;
      pins.set(image, formatReference({ ...ref, tag: undefined, digest }));
    }
    return parsed.pinned((image) => pins.get(image)!);
  }

  /** The build task's work: the source (checked out here before, or fetched now), then the executor (runSourceBuild). */
  private async build(payload: KanikoPayload, context: JobContext): Promise<Descriptor | JobContinuation> {
    const recipe = { kind: 'dockerfile', dockerfile: payload.dockerfile, timestamp: payload.commitTime || undefined } as const;
    try {
      return await runSourceBuild(this.executor, this.slots, context, executorRequest(this.config, context, buildIdOf(payload), recipe), async () => {
        const dir = await this.contextDir(payload, context);
        context.line(`kontain: building ${payload.owner}/${payload.repo}${payload.dir ? `/${payload.dir}` : ''} at ${payload.commit} with ${this.executor.kind}`);
        return { dir };
      });
    } catch (err) {
      throw sourceBuildFailure(err) ?? err;
    }
  }

  /** The source checked out while answering the pull here, or fetched now. */
  private async contextDir(payload: KanikoPayload, context: JobContext): Promise<string> {
    const prepared = this.prepared.get(payload.sourceKey);
    if (prepared) {
      this.prepared.delete(payload.sourceKey);
      clearTimeout(prepared.timer);
      return prepared.dir;
    }
    context.line(`kontain: fetching ${payload.owner}/${payload.repo} at ${payload.commit}`);
    return (await this.checkout(payload.owner, payload.repo, payload.commit, payload.dir)).dir;
  }
}

function buildIdOf(payload: KanikoPayload): string {
  return `kaniko-${payload.sourceKey.slice(0, 12)}-${sha256Hex(payload.dockerfile).slice(0, 8)}`;
}

async function readDockerfile(dir: string): Promise<string | null> {
  const file = path.join(dir, 'Dockerfile');
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) return null;
  if (info.size > MAX_DOCKERFILE_BYTES) throw new RegistryError('MANIFEST_UNKNOWN', `the Dockerfile is larger than ${MAX_DOCKERFILE_BYTES} bytes`, { status: 422 });
  return readFile(file, 'utf8');
}

