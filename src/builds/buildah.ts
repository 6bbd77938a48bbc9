/**
 * The local executor: Debian's buildah. Dockerfiles: `bud --isolation chroot --storage-driver vfs`
 * (no daemon, no overlay mounts, works inside a container), gzip layers (`-D=false`),
 * written as an OCI layout that is then read into the store. Each build has its own
 * buildah storage under the work directory, removed afterwards, so nothing accumulates.
 * Buildpack builds run the builder's lifecycle in a buildah working container
 * (buildpack-script.ts), with the same bounds.
 *
 * This runs the Dockerfile's RUN steps on this machine as the server's user (root, in
 * the image) with the host's network: chroot isolation is not a security boundary.
 * KONTAIN_BUILD_ALLOW decides whose code runs at all.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ContentStore } from '../content/store.js';
import { splitHostPort } from '../remote/address-safety.js';
import { runProcess, type ProcessOutcome } from '../util/run-process.js';
import { directoryBytes } from '../git/source.js';
import { BuildFailed, BuildOutputRefused, BuildTimedOut, ExecutorUnavailable, stepOf, type BuildExecutor, type BuildpackRecipe, type BuildRequest, type DockerfileRecipe } from './executor.js';
import { BUILDPACK_SCRIPT, creatorFailure, OUTPUT_LAYOUT, recipeEnv } from './buildpack-script.js';
import type { Descriptor } from '../oci/types.js';
import { importOciLayout } from './oci-layout.js';

export interface BuildahOptions {
  store: ContentStore;
  /** The buildah command. */
  buildah: string;
  /** Builds' working directories live here. */
  workDir: string;
  /** docker config.json with registry credentials for FROM images. */
  authFile?: string;
  /** Disk the build's working directory may use (buildah's storage holds every layer unpacked). */
  maxDiskBytes: number;
}

const DISK_POLL_MS = 2000;

export class BuildahExecutor implements BuildExecutor {
  readonly kind = 'buildah';

  constructor(private readonly options: BuildahOptions) {}

  async build(request: BuildRequest): Promise<Descriptor> {
    await mkdir(this.options.workDir, { recursive: true });
    const work = await mkdtemp(path.join(this.options.workDir, `${request.id.slice(0, 16)}-`));
    let succeeded = false;
    try {
      await mkdir(path.join(work, 'tmp'));
      const started = Date.now();
      const layout = request.recipe.kind === 'buildpack' ? await this.buildpack(request, request.recipe, work) : await this.dockerfile(request, request.recipe, work);
      const built = Date.now();
      request.onLine(`kontain: ${request.recipe.kind === 'buildpack' ? 'the buildpack build' : 'buildah bud'} took ${((built - started) / 1000).toFixed(2)} s`);
      const image = await importOciLayout(this.options.store, layout, request.maxOutputBytes);
      request.onLine(`kontain: read into the store in ${((Date.now() - built) / 1000).toFixed(2)} s`);
      succeeded = true;
      return image;
    } finally {
      // buildah's vfs storage holds every layer unpacked, several times: after a success its
      // removal is not on the pull's path (it is still bounded: the next build waits for no
      // disk it holds, and a failure removes it before answering).
      const removal = rm(work, { recursive: true, force: true });
      if (succeeded) void removal.catch(() => undefined);
      else await removal;
    }
  }

  /** `buildah bud` of the Dockerfile; returns the OCI layout it wrote. */
  private async dockerfile(request: BuildRequest, recipe: DockerfileRecipe, work: string): Promise<string> {
    const dockerfile = path.join(work, 'Dockerfile');
    const policy = path.join(work, 'policy.json');
    const registries = path.join(work, 'registries.conf');
    const layout = path.join(work, 'image');
    await writeFile(dockerfile, recipe.dockerfile);
    // The FROM images are pinned by digest and were checked by kontain's own client;
    // signatures are not part of the contract.
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await writeFile(registries, registriesConf(request.insecureRegistries));
    const args = [
      '--root', path.join(work, 'storage'),
      '--runroot', path.join(work, 'run'),
      '--storage-driver', 'vfs',
      'bud',
      '--isolation', 'chroot',
      '-D=false',
      '--layers=false',
      '--pull=always',
      '--signature-policy', policy,
      ...(this.options.authFile ? ['--authfile', this.options.authFile] : []),
      ...(recipe.timestamp !== undefined ? ['--timestamp', String(recipe.timestamp)] : []),
      '-f', dockerfile,
      '-t', `oci:${layout}:latest`,
      request.contextDir,
    ];
    const outcome = await this.run(request, work, this.options.buildah, args, { CONTAINERS_REGISTRIES_CONF: registries, BUILDAH_FORMAT: 'oci' }, 'buildah bud');
    if (outcome.code !== 0) throw new BuildFailed(`buildah bud failed (${outcome.signal ?? `exit ${outcome.code}`})`);
    return layout;
  }

  /** The builder's lifecycle in a buildah working container (buildpack-script.ts); returns the OCI layout it exported. */
  private async buildpack(request: BuildRequest, recipe: BuildpackRecipe, work: string): Promise<string> {
    const env = {
      ...recipeEnv(recipe, registriesConf(request.insecureRegistries)),
      KONTAIN_CONTEXT: request.contextDir,
      KONTAIN_WORK: work,
      KONTAIN_BUILDAH: this.options.buildah,
      ...(this.options.authFile ? { KONTAIN_AUTHFILE: this.options.authFile } : {}),
    };
    const outcome = await this.run(request, work, 'sh', ['-c', BUILDPACK_SCRIPT], env, 'the buildpack build');
    if (outcome.code === 127) throw new ExecutorUnavailable(`this server cannot run buildah (\`${this.options.buildah}\`; install Debian's buildah or set KONTAIN_BUILDAH)`);
    if (outcome.code !== 0) throw new BuildFailed(outcome.code === null ? `the buildpack build was killed (${outcome.signal})` : creatorFailure(outcome.code));
    return path.join(request.contextDir, OUTPUT_LAYOUT);
  }

  /** Runs a build program under the request's time limit, its abort and the disk bound of the work directory. */
  private async run(request: BuildRequest, work: string, command: string, args: string[], env: Record<string, string>, what: string): Promise<ProcessOutcome> {
    let tooLarge = false;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    request.signal?.addEventListener('abort', onAbort, { once: true });
    const watch = setInterval(() => {
      Promise.all([directoryBytes(work), directoryBytes(request.contextDir)]).then(([a, b]) => {
        if (a + b > this.options.maxDiskBytes) {
          tooLarge = true;
          controller.abort();
        }
      }, () => undefined);
    }, DISK_POLL_MS);
    let outcome: ProcessOutcome;
    try {
      outcome = await runProcess(command, args, {
        cwd: work,
        env: {
          PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
          HOME: work,
          TMPDIR: path.join(work, 'tmp'),
          ...env,
        },
        timeoutMs: request.timeoutMs,
        signal: controller.signal,
        onLine: (line) => {
          request.onLine(line);
          const step = stepOf(line);
          if (step) request.onProgress?.(step);
        },
      });
    } catch (err) {
      throw new ExecutorUnavailable(`this server cannot run ${what} (\`${command}\`; install Debian's buildah or set KONTAIN_BUILDAH): ${(err as Error).message}`);
    } finally {
      clearInterval(watch);
      request.signal?.removeEventListener('abort', onAbort);
    }
    if (tooLarge) throw new BuildOutputRefused(`the build used more than ${this.options.maxDiskBytes} bytes of disk and was stopped (KONTAIN_BUILD_MAX_OUTPUT_BYTES)`);
    if (outcome.timedOut) throw new BuildTimedOut(`the build took longer than ${Math.round(request.timeoutMs / 1000)} s and was stopped (KONTAIN_BUILD_TIMEOUT)`);
    if (outcome.aborted) throw new BuildFailed('the build was stopped');
    return outcome;
  }
}

/** containers-registries.conf(5): only the allowlisted registries over plain HTTP; no short names. */
export function registriesConf(insecure: readonly string[]): string {
  const lines = ['unqualified-search-registries = ["docker.io"]', 'short-name-mode = "disabled"', ''];
  for (const entry of insecure) {
    const { hostname, port } = splitHostPort(entry);
    const location = `${hostname.includes(':') ? `[${hostname}]` : hostname}${port ? `:${port}` : ''}`;
    lines.push('[[registry]]', `location = ${JSON.stringify(location)}`, 'insecure = true', '');
  }
  return lines.join('\n');
}
