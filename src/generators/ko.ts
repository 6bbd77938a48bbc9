import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.js';
import type { Config } from '../config.js';
import { writeGzipLayer, type WrittenLayer } from '../oci/layer.js';
import { writeIndex } from '../oci/image.js';
import type { Descriptor } from '../oci/types.js';
import { ACTIONABLE_STATUS, RegistryError } from '../registry/errors.js';
import type { RegistryClient } from '../remote/client.js';
import { InvalidReferenceError } from '../remote/reference.js';
import type { BuildFacility } from '../builds/facility.js';
import { createBuildFacility } from '../builds/index.js';
import { Semaphore } from '../util/semaphore.js';
import { mapConcurrent } from '../util/concurrency.js';
import { BaseImageUnusable, copyBaseLayers, fetchBaseImage, resolveBase, type BaseImage } from '../ko/base-image.js';
import { GoBuildFailed, goBuild, GoBuildTimeout, GoToolchainMissing, platformName } from '../ko/go-build.js';
import { BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, writeKoImage } from '../ko/image.js';
import { baseImageFor, KoYamlInvalid, readKoYaml } from '../ko/ko-yaml.js';
import { binaryLayer, KodataRefused, kodataLayer } from '../ko/layers.js';
import { isBuildableImportPath } from '../ko/module-path.js';
import { GoModuleProxy, ModuleNotFound, ModuleTooLarge, type ModuleVersion } from '../ko/module-proxy.js';
import { extractModuleZip, ModuleZipRefused } from '../ko/module-zip.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import { isUpstreamOutage, upstreamFailure } from './upstream.js';

/**
 * `ko`: `ko/<go import path>:<version>` builds the package from its module (fetched from
 * the Go module proxy) for every platform of the base image and lays the binary on it,
 * as `ko build` does. The image is remembered per (import path, module version) together
 * with the base it was built on; a pull rebuilds only when the base image has moved.
 */
export class KoGenerator implements Generator {
  readonly service = 'ko';
  private readonly store: ContentStore;
  private readonly config: Config;
  private readonly proxy: GoModuleProxy;
  private readonly builds: Semaphore;
  private readonly facility: BuildFacility;

  constructor(
    context: GeneratorContext,
    private readonly client: RegistryClient,
  ) {
    this.store = context.store;
    this.config = context.config;
    this.proxy = new GoModuleProxy(context.config.goproxy);
    this.builds = new Semaphore(context.config.koMaxBuilds);
    this.facility = context.builds ?? createBuildFacility(context);
    // A cold ko build takes 20-30 s: it runs as slow work, answered "building" past the hold.
    this.facility.register(this.service, async (payload, job) => {
      const { importPath, module, version, key } = payload as KoPayload;
      try {
        return await this.build(importPath, { module, version }, key, job.log);
      } catch (err) {
        throw koFailure(err) ?? err;
      }
    });
  }

  async manifest(request: TagRequest): Promise<Descriptor> {
    // kontain.me takes ko.kontain.me/ko/<path> as well as ko.kontain.me/<path>; `ko` has
    // no dot, so it can never be the first element of a real import path.
    const importPath = request.repository.replace(/^ko\//, '');
    if (!isBuildableImportPath(importPath)) {
      throw new RegistryError('NAME_INVALID', `ko/${importPath}: name a Go package by its import path, e.g. ko/github.com/owner/repo/cmd/tool`);
    }
    try {
      const module = await this.proxy.findModule(importPath, request.tag);
      const key = createHash('sha256').update(`${importPath}\n${module.module}@${module.version}`).digest('hex');
      const cached = await this.cachedBuild(key, request.log);
      if (cached) return cached;
      const payload: KoPayload = { importPath, module: module.module, version: module.version, key };
      return await this.facility.obtain(
        { kind: this.service, service: this.service, key, label: `${importPath}@${module.version}`, payload: { ...payload } },
        // The cached image (if any) was found out of date: build anew even though it exists.
        { baseUrl: request.baseUrl, log: request.log, replace: true },
      );
    } catch (err) {
      throw koFailure(err) ?? err;
    }
  }

  /** The image built before for this version, if its base image has not moved since. */
  private async cachedBuild(key: string, log: Logger): Promise<Descriptor | undefined> {
    const pointer = await this.store.getPointer(this.service, key);
    const built = pointer?.descriptor;
    const baseName = built?.annotations?.[BASE_NAME_ANNOTATION];
    if (!built || !baseName || !(await this.store.getManifest(built.digest))) return undefined;
    let current: string;
    try {
      current = await resolveBase(this.client, baseName);
    } catch (err) {
      if (!isUpstreamOutage(err)) throw err;
      // The image is built; an unreachable base registry must not make it unpullable.
      log.warn({ service: this.service, base: baseName, err: (err as Error).message }, 'ko: base registry unreachable; serving the image built before');
      return { mediaType: built.mediaType, digest: built.digest, size: built.size };
    }
    if (current !== built.annotations?.[BASE_DIGEST_ANNOTATION]) {
      log.info({ service: this.service, base: baseName }, 'ko: base image moved; rebuilding');
      return undefined;
    }
    return { mediaType: built.mediaType, digest: built.digest, size: built.size };
  }

  private async build(importPath: string, module: ModuleVersion, key: string, log: Logger): Promise<Descriptor> {
    const started = Date.now();
    await mkdir(this.config.koCacheDir, { recursive: true });
    const work = await mkdtemp(path.join(this.config.koCacheDir, 'work-'));
    try {
      const zip = path.join(work, 'module.zip');
      const source = path.join(work, 'src');
      await this.proxy.downloadZip(module, zip, this.config.koMaxModuleBytes);
      const extracted = await extractModuleZip(zip, source, module, this.config.koMaxModuleBytes);
      log.info({ service: this.service, module: module.module, version: module.version, h1: extracted.h1, files: extracted.files }, 'ko: module fetched');

      const packageDir = path.join(source, ...importPath.slice(module.module.length).split('/').filter(Boolean));
      if (!(await stat(packageDir).catch(() => undefined))?.isDirectory()) {
        throw new RegistryError('MANIFEST_UNKNOWN', `module ${module.module}@${module.version} has no package ${importPath}`);
      }
      const baseName = baseImageFor(await readKoYaml(source), importPath, this.config.koBaseImage);
      const base = await fetchBaseImage(this.client, baseName);
      const appName = appNameOf(importPath);
      const kodata = await writeGzipLayer(this.store, await kodataLayer(packageDir));

      const images = await mapConcurrent(base.images, base.images.length, async (image) => {
        const binary = path.join(work, `out-${platformName(image.platform).replaceAll('/', '-')}`);
        await this.builds.run(() =>
          goBuild({
            go: this.config.goCommand,
            moduleDir: source,
            importPath,
            platform: image.platform,
            output: binary,
            cacheDir: this.config.koCacheDir,
            goproxy: this.config.goproxy,
            timeoutMs: this.config.koBuildTimeoutSeconds * 1000,
          }),
        );
        const binaryWritten: WrittenLayer = await writeGzipLayer(this.store, await binaryLayer(binary, appName));
        await copyBaseLayers(this.client, this.store, base, image.manifest);
        const built = await writeKoImage(this.store, base, image, { kodata, binary: binaryWritten }, appName, importPath);
        return { ...image.descriptor, mediaType: built.mediaType, digest: built.digest, size: built.size };
      });
      const result = base.isIndex ? await this.writeIndex(base, images) : images[0]!;
      const descriptor = { mediaType: result.mediaType, digest: result.digest, size: result.size };
      log.info({ service: this.service, importPath, version: module.version, base: base.name, baseDigest: base.digest, digest: descriptor.digest, platforms: images.length, ms: Date.now() - started }, 'ko built');
      // The facility keeps this as the key's pointer: the base annotations tell a later pull whether the base moved.
      return { ...descriptor, annotations: { [BASE_NAME_ANNOTATION]: base.name, [BASE_DIGEST_ANNOTATION]: base.digest } };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** The index keeps the base's media type, order, and each entry's platform, urls and annotations. */
  private writeIndex(base: BaseImage, images: Descriptor[]): Promise<Descriptor> {
    return writeIndex(this.store, base.family, images, { [BASE_NAME_ANNOTATION]: base.name, [BASE_DIGEST_ANNOTATION]: base.digest });
  }
}

/** What a ko build task carries. */
interface KoPayload {
  importPath: string;
  module: string;
  version: string;
  key: string;
}

/** ko names the binary after the last element of the import path (`ko-app` when there is none). */
function appNameOf(importPath: string): string {
  const last = importPath.split('/').at(-1);
  return last && last !== '.' ? last : 'ko-app';
}

/** The registry answer for a failed build; undefined for the unexpected (a 500). */
function koFailure(err: unknown): RegistryError | undefined {
  if (err instanceof RegistryError) return err;
  if (err instanceof ModuleNotFound) return new RegistryError('MANIFEST_UNKNOWN', err.message);
  if (err instanceof GoToolchainMissing) return new RegistryError('UNAVAILABLE', err.message, { status: 503 });
  // Too slow is not proven to be the module's fault (the server may be busy): a gateway timeout.
  if (err instanceof GoBuildTimeout) return new RegistryError('UNAVAILABLE', err.message, { status: 504 });
  // The request names something that cannot be built: a 4xx, with the reason.
  if (err instanceof GoBuildFailed || err instanceof ModuleZipRefused || err instanceof ModuleTooLarge || err instanceof KodataRefused || err instanceof KoYamlInvalid || err instanceof BaseImageUnusable) {
    return new RegistryError('MANIFEST_UNKNOWN', err.message, { status: ACTIONABLE_STATUS.cannotBuild });
  }
  if (err instanceof InvalidReferenceError) return new RegistryError('MANIFEST_UNKNOWN', `the module's base image: ${err.message}`, { status: ACTIONABLE_STATUS.cannotBuild });
  // ModuleProxyError is an UpstreamError: answered like any other upstream's failure.
  return upstreamFailure(err);
}
