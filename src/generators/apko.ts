import type { Logger } from 'pino';
import { ApkError, type ApkFailure } from '../apk/errors.js';
import { ApkFetcher } from '../apk/fetch.js';
import { ApkoBuilder, type ApkoRequest } from '../apk/build.js';
import { parseApkoImage, type ApkoSettings } from '../apk/image-config.js';
import { platformOfApkArch } from '../apk/arch.js';
import { repositoryBase } from '../apk/repository.js';
import { ResolveError } from '../apk/types.js';
import type { ContentStore } from '../content/store.js';
import type { BuildFacility } from '../builds/facility.js';
import { createBuildFacility } from '../builds/index.js';
import type { JsonValue } from '../tasks/queue.js';
import { writeIndex } from '../oci/image.js';
import type { Descriptor } from '../oci/types.js';
import { ACTIONABLE_STATUS, RegistryError } from '../registry/errors.js';
import { isAllowlisted, splitHostPort } from '../remote/address-safety.js';
import type { Config } from '../config.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import { hostWithPort, upstreamFailure } from './upstream.js';

const MAX_CONFIG_BYTES = 1024 * 1024;
const NO_SETTINGS: ApkoSettings = { users: [], groups: [], environment: {} };

/** What an apko request names: packages from the operator's repository, or a configuration URL. */
export type ApkoTarget = { kind: 'packages'; packages: string[] } | { kind: 'url'; host: string; path: string };

/**
 * `apko/<pkg>/<pkg>/...` or `apko/url/<host>/<path>.yaml`. A repository name cannot hold
 * `:`, so a port is written with a dash after the host, as for mirror:
 * `url/127.0.0.1-8443/x.yaml` → 127.0.0.1:8443.
 */
export function parseApkoRepository(repository: string): ApkoTarget {
  const parts = repository.split('/').filter(Boolean);
  if (parts.length === 0) throw new RegistryError('NAME_INVALID', 'name packages after apko/, e.g. apko/busybox, or a configuration: apko/url/<host>/<path>.yaml');
  if (parts[0] !== 'url') return { kind: 'packages', packages: parts };
  if (parts.length < 3 || !/\.ya?ml$/.test(parts.at(-1)!)) {
    throw new RegistryError('NAME_INVALID', `apko/url/ takes <host>/<path>.yaml, the HTTPS location of an apko configuration; got ${repository}`);
  }
  return { kind: 'url', host: hostWithPort(parts[1]!), path: '/' + parts.slice(2).join('/') };
}

/** The registry answer for a refused build; anything unexpected stays a 500. */
export function apkoFailure(err: unknown): RegistryError | undefined {
  if (err instanceof RegistryError) return err;
  if (err instanceof ResolveError) {
    return err.failure === 'unknown-package'
      ? new RegistryError('MANIFEST_UNKNOWN', err.message)
      : new RegistryError('MANIFEST_UNKNOWN', `cannot install: ${err.message}`, { status: ACTIONABLE_STATUS.cannotBuild });
  }
  if (err instanceof ApkError) {
    const what: Record<ApkFailure, string> = {
      'bad-signature': 'bad signature',
      'checksum-mismatch': 'checksum mismatch',
      malformed: 'malformed input',
      'file-conflict': 'file conflict',
      'fetch-failed': 'fetch failed',
      'too-large': 'too large',
    };
    return new RegistryError('MANIFEST_UNKNOWN', `${what[err.failure]}: ${err.message}`, { status: err.failure === 'fetch-failed' ? ACTIONABLE_STATUS.upstreamFailed : ACTIONABLE_STATUS.cannotBuild });
  }
  return upstreamFailure(err);
}

/** `apko`: images made from APK packages, the way apko makes them (one layer, no RUN). */
export class ApkoGenerator implements Generator {
  readonly service = 'apko';
  private readonly store: ContentStore;
  private readonly config: Config;
  private readonly fetcher: ApkFetcher;
  private readonly builder: ApkoBuilder;
  private readonly facility: BuildFacility;

  constructor(context: GeneratorContext) {
    this.store = context.store;
    this.config = context.config;
    const { insecureRegistries, upstreamStallMs, upstreamMinRate, upstreamRateWindowMs } = context.config;
    this.fetcher = new ApkFetcher({ insecureRegistries, stallMs: upstreamStallMs, minBytesPerSecond: upstreamMinRate, rateWindowMs: upstreamRateWindowMs });
    this.builder = new ApkoBuilder(context.store, this.fetcher);
    this.facility = context.builds ?? createBuildFacility(context);
    this.facility.register(this.service, async (payload, job) => {
      try {
        const prepared = await this.builder.prepare(payload as ApkoRequest);
        const { descriptor, timings } = await this.builder.assemble(prepared);
        job.log.info({ service: this.service, arch: prepared.request.arch, packages: prepared.packages.length, indexMs: prepared.indexMs, ...timings, digest: descriptor.digest }, 'apko built');
        return descriptor;
      } catch (err) {
        throw apkoFailure(err) ?? err;
      }
    });
  }

  async manifest(request: TagRequest): Promise<Descriptor> {
    if (request.tag !== 'latest') {
      throw new RegistryError(
        'MANIFEST_UNKNOWN',
        `apko builds from the current package index only, so the only tag is latest (got ${request.tag}); pull ${request.repository}:latest, or pin versions in an apko configuration`,
      );
    }
    const target = parseApkoRepository(request.repository);
    try {
      const requests = target.kind === 'packages' ? this.packagesRequest(target.packages) : await this.configRequest(target, request.log);
      const images: Descriptor[] = [];
      for (const one of requests) images.push(await this.build(one, request));
      if (images.length === 1) return images[0]!;
      const children = images.map((d, i) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, platform: platformOfApkArch(requests[i]!.arch) }));
      return await writeIndex(this.store, 'oci', children);
    } catch (err) {
      throw apkoFailure(err) ?? err;
    }
  }

  /** One architecture's image: cached by its resolved package set, else built as slow work (answered "building" past the hold). */
  private async build(request: ApkoRequest, tagRequest: TagRequest): Promise<Descriptor> {
    const prepared = await this.builder.prepare(request);
    const label = `apko ${request.world.join(' ')} (${request.arch})`.slice(0, 200);
    return this.facility.obtain(
      { kind: this.service, service: this.service, key: `${request.arch}-${prepared.key}`, label, payload: JSON.parse(JSON.stringify(request)) as JsonValue },
      { baseUrl: tagRequest.baseUrl, log: tagRequest.log },
    );
  }

  private packagesRequest(packages: string[]): ApkoRequest[] {
    return this.config.apkArchs.map((arch) => ({
      world: packages,
      repositories: [this.config.apkRepository],
      keyring: this.config.apkKeyring,
      trust: 'operator' as const,
      arch,
      settings: NO_SETTINGS,
    }));
  }

  private async configRequest(target: Extract<ApkoTarget, { kind: 'url' }>, log: Logger): Promise<ApkoRequest[]> {
    const { hostname, port } = splitHostPort(target.host);
    const insecure = isAllowlisted(this.config.insecureRegistries, hostname, port ?? 80);
    const url = `${insecure ? 'http' : 'https'}://${target.host}${target.path}`;
    const text = (await this.fetcher.bytes({ url, trust: 'request', maxBytes: MAX_CONFIG_BYTES, what: `apko configuration ${url}` })).toString('utf8');
    const image = parseApkoImage(text);
    if (image.ignored.length > 0) log.info({ service: this.service, url, ignored: image.ignored }, 'apko configuration keys not honoured');
    if (image.packages.length === 0) throw new ApkError('malformed', `apko configuration ${url} lists no contents.packages`);
    // A configuration without repositories builds from the operator's (trusted) repository.
    const own = image.repositories.length > 0;
    const { repositories: _repositories, keyring: _keyring, packages: _packages, archs: _archs, ignored: _ignored, ...settings } = image;
    const archs = image.archs.length > 0 ? image.archs : this.config.apkArchs;
    return archs.map((arch) => ({
      world: image.packages,
      repositories: own ? image.repositories.map(repositoryBase) : [this.config.apkRepository],
      keyring: own ? image.keyring : this.config.apkKeyring,
      trust: own ? ('request' as const) : ('operator' as const),
      arch,
      settings,
    }));
  }
}
