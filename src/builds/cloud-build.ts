/**
 * The production executor: Cloud Build, through `@google-cloud/cloudbuild` over its REST
 * transport (as the Cloud Tasks client is used), so builds run away from the serving
 * instance and its credentials.
 *
 *   1. The context directory is uploaded as a tar.gz to the store's bucket
 *      (`builds/cloud/<id>/source.tar.gz`) and named as the build's storage source.
 *   2. One step in a maintained buildah image runs the same `buildah bud` as the local
 *      executor (vfs, chroot, gzip layers) and writes an OCI archive; Cloud Build uploads
 *      it as an artifact next to the source, and its log to the same folder. A buildpack
 *      build is the same step running the local executor's script (buildpack-script.ts):
 *      buildah makes a working container from the builder image and runs its lifecycle;
 *      the context uploaded holds the app and the run image's layout.
 *   3. Each later look at the build is a task of its own (`poll`, re-queued by the
 *      slow-build facility), so no instance waits on it; when it has ended, the log and
 *      the archive are read into the store and the folder deleted.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CloudBuildClient } from '@google-cloud/cloudbuild';
import type { ContentStore } from '../content/store.js';
import { ObjectNotFound } from '../storage/backend.js';
import type { Descriptor } from '../oci/types.js';
import { ByteLimit } from '../util/byte-limit.js';
import { runProcess } from '../util/run-process.js';
import { BuildFailed, BuildOutputRefused, BuildTimedOut, ExecutorUnavailable, type BuildExecutor, type BuildRequest, type RemoteBuild } from './executor.js';
import { registriesConf } from './buildah.js';
import { importOciLayout } from './oci-layout.js';
import { BUILDPACK_SCRIPT, creatorFailure, OUTPUT_LAYOUT, recipeEnv } from './buildpack-script.js';

export interface CloudBuildOptions {
  store: ContentStore;
  project: string;
  /** `global` or a region. */
  location: string;
  /** The image the build step runs (it must have bash and buildah). */
  builderImage: string;
  /** The store's bucket and folder (the executor needs a GCS store). */
  bucket: string;
  prefix: string;
  workDir: string;
  /** A Cloud Build API endpoint other than Google's, called without credentials (local tests). */
  endpoint?: string;
  /** Between two looks at a running build, in ms (default 2 s). */
  pollMs?: number;
}

const OUTPUT = 'kontain-image.tar';
const DONE = new Set(['SUCCESS', 'FAILURE', 'INTERNAL_ERROR', 'TIMEOUT', 'CANCELLED', 'EXPIRED']);
/** The Build.Status enum, for answers that carry numbers. */
const STATUS_NAMES: Record<number, string> = { 0: 'STATUS_UNKNOWN', 10: 'PENDING', 1: 'QUEUED', 2: 'WORKING', 3: 'SUCCESS', 4: 'FAILURE', 5: 'INTERNAL_ERROR', 6: 'TIMEOUT', 7: 'CANCELLED', 9: 'EXPIRED' };

/**
 * The build step's script. Cloud Build substitutes `$NAME` in args, so every shell `$` is
 * written `$$`. Paths are under TMPDIR (or /tmp) and the workspace is the context.
 */
const STEP_SCRIPT = [
  'set -eu',
  't="$${TMPDIR:-/tmp}/kontain"',
  'mkdir -p "$$t"',
  `printf '%s' "$$KONTAIN_DOCKERFILE" > "$$t/Dockerfile"`,
  `printf '%s' "$$KONTAIN_REGISTRIES_CONF" > "$$t/registries.conf"`,
  `printf '%s' '{"default":[{"type":"insecureAcceptAnything"}]}' > "$$t/policy.json"`,
  'CONTAINERS_REGISTRIES_CONF="$$t/registries.conf" buildah --root "$$t/storage" --runroot "$$t/run" --storage-driver vfs bud --isolation chroot -D=false --layers=false --pull=always --signature-policy "$$t/policy.json" $${KONTAIN_TIMESTAMP:+--timestamp "$$KONTAIN_TIMESTAMP"} -f "$$t/Dockerfile" -t "oci-archive:$$t/image.tar" .',
  `cp "$$t/image.tar" ${OUTPUT}`,
].join('\n');

export class CloudBuildExecutor implements BuildExecutor {
  readonly kind = 'cloudbuild';
  private clientPromise?: Promise<CloudBuildClient>;

  constructor(private readonly options: CloudBuildOptions) {}

  /** Loaded on first use, so a server that never builds here never loads the client. */
  private get client(): Promise<CloudBuildClient> {
    this.clientPromise ??= Promise.all([import('@google-cloud/cloudbuild'), import('google-auth-library')]).then(([{ CloudBuildClient }, { PassThroughClient }]) => {
      const options = this.options;
      if (!options.endpoint) return new CloudBuildClient({ fallback: true });
      const url = new URL(options.endpoint);
      return new CloudBuildClient({
        fallback: true,
        apiEndpoint: url.hostname,
        port: Number(url.port) || (url.protocol === 'http:' ? 80 : 443),
        protocol: url.protocol === 'http:' ? 'http' : 'https',
        // The test endpoint takes no credentials.
        authClient: new PassThroughClient() as never,
      });
    });
    return this.clientPromise;
  }

  get pollSeconds(): number {
    return (this.options.pollMs ?? 2000) / 1000;
  }

  /** Submits, then looks every pollMs until done: for callers without a task queue. */
  async build(request: BuildRequest): Promise<Descriptor> {
    const remote = await this.submit(request);
    for (;;) {
      const image = await this.poll(remote, request);
      if (image) return image;
      await new Promise((resolve) => setTimeout(resolve, this.options.pollMs ?? 2000));
    }
  }

  /** Uploads the context and creates the build; its folder is removed if that fails. */
  async submit(request: BuildRequest): Promise<RemoteBuild> {
    const folder = this.folderOf(request.id);
    const gsFolder = `gs://${this.options.bucket}/${this.objectName(folder)}`;
    try {
      await this.uploadSource(request.contextDir, `${folder}/source.tar.gz`, request.signal);
      const build = {
        source: { storageSource: { bucket: this.options.bucket, object: this.objectName(`${folder}/source.tar.gz`) } },
        steps: [this.step(request)],
        artifacts: { objects: { location: `${gsFolder}/`, paths: [OUTPUT] } },
        logsBucket: gsFolder,
        options: { logging: 'GCS_ONLY' as const },
        timeout: { seconds: Math.ceil(request.timeoutMs / 1000) },
        tags: ['kontain', request.id.replace(/[^a-z0-9-]/g, '-').slice(0, 100)],
      };
      const parent = this.options.location === 'global' ? undefined : `projects/${this.options.project}/locations/${this.options.location}`;
      let buildId: string;
      try {
        const [operation] = await (await this.client).createBuild({ projectId: this.options.project, ...(parent ? { parent } : {}), build });
        const metadata = operation.metadata as { build?: { id?: string } } | null;
        buildId = metadata?.build?.id ?? '';
        if (!buildId) throw new Error('the answer named no build id');
      } catch (err) {
        throw new ExecutorUnavailable(`Cloud Build did not take the build: ${(err as Error).message}`);
      }
      request.onLine(`kontain: Cloud Build ${buildId} in project ${this.options.project}`);
      return { buildId, submitted: Date.now() };
    } catch (err) {
      await this.removeFolder(folder);
      throw err;
    }
  }

  /** One look at the build: undefined while it runs; when it has ended, its log, then its image or its failure. */
  async poll(remote: RemoteBuild, request: Omit<BuildRequest, 'contextDir'>): Promise<Descriptor | undefined> {
    const folder = this.folderOf(request.id);
    const buildId = remote.buildId;
    const name = this.options.location === 'global' ? undefined : `projects/${this.options.project}/locations/${this.options.location}/builds/${buildId}`;
    const ids = { projectId: this.options.project, id: buildId, ...(name ? { name } : {}) };
    let done = false;
    try {
      const [finished] = await (await this.client).getBuild(ids);
      const status = statusName(finished.status);
      if (!DONE.has(status)) {
        // Cloud Build enforces the timeout itself; this bound only covers a build it lost track of.
        if (Date.now() > remote.submitted + request.timeoutMs + 10 * 60_000) {
          done = true;
          await (await this.client).cancelBuild(ids).catch(() => undefined);
          throw new BuildTimedOut(`Cloud Build ${buildId} did not finish in time`);
        }
        if (request.signal?.aborted) {
          done = true;
          await (await this.client).cancelBuild(ids).catch(() => undefined);
          throw new BuildFailed('the build was stopped');
        }
        return undefined;
      }
      done = true;
      await this.forwardLog(`${folder}/log-${buildId}.txt`, request);
      if (status === 'TIMEOUT') throw new BuildTimedOut(`the build took longer than ${Math.round(request.timeoutMs / 1000)} s and was stopped (KONTAIN_BUILD_TIMEOUT)`);
      if (status !== 'SUCCESS') throw new BuildFailed(`Cloud Build ${buildId} ended ${status}${finished.statusDetail ? `: ${finished.statusDetail}` : ''}${stepFailure(request, finished.statusDetail)}`);
      return await this.importOutput(`${folder}/${OUTPUT}`, request);
    } finally {
      if (done) await this.removeFolder(folder);
    }
  }

  /** The one build step: buildah in the builder step image, as the local executor runs it. */
  private step(request: BuildRequest): { name: string; entrypoint: string; args: string[]; env: string[] } {
    const recipe = request.recipe;
    const registries = registriesConf(request.insecureRegistries);
    if (recipe.kind === 'buildpack') {
      const env = recipeEnv(recipe, registries);
      return {
        name: this.options.builderImage,
        entrypoint: 'bash',
        args: ['-c', `${cloudBuildEscaped(BUILDPACK_SCRIPT)}\ntar -cf ${OUTPUT} -C ${OUTPUT_LAYOUT} .`],
        env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
      };
    }
    return {
      name: this.options.builderImage,
      entrypoint: 'bash',
      args: ['-c', STEP_SCRIPT],
      env: [
        `KONTAIN_DOCKERFILE=${recipe.dockerfile}`,
        `KONTAIN_REGISTRIES_CONF=${registries}`,
        ...(recipe.timestamp !== undefined ? [`KONTAIN_TIMESTAMP=${recipe.timestamp}`] : []),
      ],
    };
  }

  private folderOf(id: string): string {
    return `builds/cloud/${id}`;
  }

  private objectName(name: string): string {
    return `${this.options.prefix ? `${this.options.prefix}/` : ''}${name}`;
  }

  private async uploadSource(contextDir: string, name: string, signal?: AbortSignal): Promise<void> {
    let upload: Promise<boolean> | undefined;
    const errors: string[] = [];
    const outcome = await runProcess('tar', ['-cz', '-C', contextDir, '.'], {
      timeoutMs: 300_000,
      signal,
      onLine: (line) => errors.push(line),
      stdout: (stream) => {
        upload = this.options.store.backend.createIfAbsent(name, stream, { contentType: 'application/gzip' });
      },
    });
    await upload;
    if (outcome.code !== 0) throw new ExecutorUnavailable(`packing the build context failed: ${errors.slice(-3).join(' ')}`);
  }

  /** Cloud Build's log (written to the logs bucket) into the build's own log. */
  private async forwardLog(name: string, request: Pick<BuildRequest, 'onLine'>): Promise<void> {
    let stream: Readable;
    try {
      stream = await this.options.store.backend.read(name);
    } catch (err) {
      if (err instanceof ObjectNotFound) {
        request.onLine('kontain: Cloud Build wrote no log');
        return;
      }
      throw err;
    }
    let partial = '';
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      partial += chunk.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) request.onLine(line);
    }
    if (partial) request.onLine(partial);
  }

  /** The OCI archive from the bucket, unpacked (bounded) and read into the store. */
  private async importOutput(name: string, request: Pick<BuildRequest, 'maxOutputBytes'>): Promise<Descriptor> {
    await mkdir(this.options.workDir, { recursive: true });
    const dir = await mkdtemp(path.join(this.options.workDir, 'cloud-'));
    try {
      let source: Readable;
      try {
        source = await this.options.store.backend.read(name);
      } catch (err) {
        if (err instanceof ObjectNotFound) throw new BuildFailed('Cloud Build finished but left no image');
        throw err;
      }
      const limit = new ByteLimit(request.maxOutputBytes + 1024 * 1024, () => new BuildOutputRefused(`the built image is larger than the limit of ${request.maxOutputBytes} bytes (KONTAIN_BUILD_MAX_OUTPUT_BYTES)`));
      const errors: string[] = [];
      let piped: Promise<void> | undefined;
      const outcome = await runProcess('tar', ['-x', '--no-same-owner', '-C', dir], {
        timeoutMs: 600_000,
        onLine: (line) => errors.push(line),
        stdin: (stdin) => {
          piped = pipeline(source, limit, stdin);
        },
      });
      await piped;
      if (outcome.code !== 0) throw new BuildOutputRefused(`the build's OCI archive could not be unpacked: ${errors.slice(-3).join(' ')}`);
      return await importOciLayout(this.options.store, dir, request.maxOutputBytes);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async removeFolder(folder: string): Promise<void> {
    const backend = this.options.store.backend;
    for await (const { name } of backend.list(`${folder}/`)) await backend.delete(name).catch(() => undefined);
  }
}

/** Cloud Build substitutes `$NAME` in a step's args: every shell `$` is written `$$`. */
function cloudBuildEscaped(script: string): string {
  return script.replaceAll('$', '$$$$');
}

/** What a buildpack step's exit status (named in Cloud Build's status detail) means. */
function stepFailure(request: Pick<BuildRequest, 'recipe'>, detail: string | null | undefined): string {
  const code = /non-zero status: (\d+)/.exec(detail ?? '')?.[1];
  return request.recipe.kind === 'buildpack' && code ? ` (${creatorFailure(Number(code))})` : '';
}

function statusName(status: unknown): string {
  if (typeof status === 'number') return STATUS_NAMES[status] ?? String(status);
  return String(status ?? 'STATUS_UNKNOWN');
}
