import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { ContentStore } from '../content/store.js';
import type { Config } from '../config.js';
import type { Descriptor } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import { ArchiveInvalid, importImageArchive, looksLikeImageArchive } from '../nix/docker-archive.js';
import { REVISION_ANNOTATION, writeNixImage } from '../nix/image.js';
import { checkResolution, FLAKE_PREFIX, parsePackages } from '../nix/packages.js';
import { NixFailed, NixMissing, NixTimeout } from '../nix/run.js';
import { NixTool } from '../nix/tool.js';
import { createBuildFacility } from '../builds/index.js';
import type { BuildFacility } from '../builds/facility.js';
import type { JsonValue } from '../tasks/queue.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';

const PACKAGES_ANNOTATION = 'me.kontain.nix.packages';
const SOURCE_ANNOTATION = 'org.opencontainers.image.source';

/** What a nix build needs, on whichever instance runs it (the slow-build facility's payload). */
type NixJob =
  | { kind: 'packages'; attrs: string[][]; shell: boolean; revision: string }
  | { kind: 'flake'; flakeRef: string; attr: string; revision: string; source: string };

/**
 * `nix`: `nix/<pkg>/<pkg>/...:latest` builds an image of packages from the operator's
 * package set (Nixery's conventions); `nix/flake--<attr>:<ref>` builds an output of the
 * operator's flake at a git ref. Images are remembered per package set revision and
 * packages (or locked flake and attribute): a repeat pull evaluates but builds nothing.
 * Builds are slow work of the core's build facility: a pull past KONTAIN_BUILD_HOLD is
 * answered "building, pull again" while the build goes on.
 */
export class NixGenerator implements Generator {
  readonly service = 'nix';
  readonly summary = 'An image of Nix packages from the operator\'s package set (nix/<pkg>/<pkg>, as Nixery names them), or of an output of the operator\'s flake (nix/flake--<attr>:<git ref>), built when pulled.';
  readonly examples = ['nix/shell/git:latest', 'nix/flake--default:main'];
  private readonly store: ContentStore;
  private readonly config: Config;
  private readonly nix: NixTool;
  private readonly facility: BuildFacility;

  constructor(context: GeneratorContext) {
    this.store = context.store;
    this.config = context.config;
    this.nix = new NixTool({ timeoutMs: context.config.nixBuildTimeoutSeconds * 1000, maxBuilds: context.config.nixMaxBuilds });
    this.facility = context.builds ?? createBuildFacility(context);
    this.facility.register(this.service, async (payload, job) => {
      const started = Date.now();
      try {
        const image = await this.build(payload as NixJob);
        job.log.info({ service: this.service, revision: (payload as NixJob).revision, ms: Date.now() - started, digest: image.digest }, 'nix built');
        return image;
      } catch (err) {
        throw nixFailure(err) ?? err;
      }
    });
  }

  async manifest(request: TagRequest): Promise<Descriptor> {
    try {
      const first = request.repository.split('/')[0] ?? '';
      if (first.startsWith(FLAKE_PREFIX)) return await this.flakeImage(request, request.repository.slice(FLAKE_PREFIX.length));
      return await this.packagesImage(request);
    } catch (err) {
      throw nixFailure(err) ?? err;
    }
  }

  private async packagesImage(request: TagRequest): Promise<Descriptor> {
    const packageSet = this.config.nixPackages;
    if (!packageSet) throw new RegistryError('NAME_UNKNOWN', 'this server has no Nix package set (KONTAIN_NIX_PACKAGES is not set)');
    const wanted = parsePackages(request.repository);
    if (request.tag !== 'latest') {
      throw new RegistryError('MANIFEST_UNKNOWN', `nix packages come from the operator's package set as it is now, so the only tag is latest (got ${request.tag})`);
    }
    const resolution = await this.nix.resolve(packageSet, wanted.packages);
    const attrs = checkResolution(wanted, resolution);
    const revision = resolution.revision || createHash('sha256').update(packageSet).digest('hex').slice(0, 16);
    const key = createHash('sha256').update(JSON.stringify({ packageSet, revision, attrs, shell: wanted.shell, layers: this.config.nixMaxLayers })).digest('hex');
    const job: NixJob = { kind: 'packages', attrs, shell: wanted.shell, revision };
    return this.obtain(key, `nix ${attrs.map((a) => a.join('.')).join(' ')}`, job, request);
  }

  private async flakeImage(request: TagRequest, attr: string): Promise<Descriptor> {
    const flake = this.config.nixFlake;
    if (!flake) throw new RegistryError('NAME_UNKNOWN', 'this server serves no flake (KONTAIN_NIX_FLAKE is not set)');
    if (!/^[a-z0-9_][a-z0-9_.-]*$/.test(attr) || attr.includes('/') || attr.split('.').some((p) => !p)) {
      throw new RegistryError('NAME_INVALID', `nix/${FLAKE_PREFIX}<attr> takes one flake output attribute, dots between names (got ${attr || 'nothing'})`);
    }
    const flakeRef = flakeAtRef(flake, request.tag);
    const metadata = await this.nix.flakeMetadata(flakeRef);
    const key = createHash('sha256').update(JSON.stringify({ flake: metadata.locked, attr, layers: this.config.nixMaxLayers })).digest('hex');
    const revision = metadata.revision ?? String(metadata.locked.narHash ?? '');
    const job: NixJob = { kind: 'flake', flakeRef, attr, revision, source: `${flake}#${attr}` };
    return this.obtain(`flake-${key}`, `nix ${flake}#${attr} (${request.tag})`, job, request);
  }

  /** The image by cache key, else built as slow work (answered "building" past the hold). */
  private obtain(key: string, label: string, job: NixJob, request: TagRequest): Promise<Descriptor> {
    return this.facility.obtain(
      { kind: this.service, service: this.service, key, label: label.slice(0, 200), payload: job as unknown as JsonValue },
      { baseUrl: request.baseUrl, log: request.log },
    );
  }

  private async build(job: NixJob): Promise<Descriptor> {
    if (job.kind === 'packages') {
      const outputs = await this.nix.buildPackages(this.config.nixPackages, job.attrs);
      const closure = await this.nix.closure(outputs);
      return writeNixImage(this.store, {
        closure,
        packagePaths: outputs,
        shell: job.shell,
        maxLayers: this.config.nixMaxLayers,
        annotations: { [REVISION_ANNOTATION]: job.revision, [PACKAGES_ANNOTATION]: job.attrs.map((a) => a.join('.')).join(',') },
      });
    }
    const outputs = await this.nix.buildFlake(job.flakeRef, job.attr);
    const annotations = { [REVISION_ANNOTATION]: job.revision, [SOURCE_ANNOTATION]: job.source };
    const only = outputs.length === 1 ? outputs[0]! : undefined;
    if (only && (await stat(only)).isFile() && (await looksLikeImageArchive(only))) return importImageArchive(this.store, only, annotations);
    const closure = await this.nix.closure(outputs);
    return writeNixImage(this.store, { closure, packagePaths: outputs, shell: false, maxLayers: this.config.nixMaxLayers, annotations });
  }
}

/**
 * The flake at the git ref the tag names: `latest` is the flake as configured; any other
 * tag is a branch or tag name, or a 40-hex commit. A local path is read as a git repository.
 */
export function flakeAtRef(flake: string, tag: string): string {
  if (tag === 'latest') return flake;
  const base = flake.startsWith('/') ? `git+file://${path.resolve(flake)}` : flake;
  if (!/^git\+|^github:|^gitlab:/.test(base)) {
    throw new RegistryError('MANIFEST_UNKNOWN', `the flake ${flake} is not a git repository, so the only tag is latest (got ${tag})`);
  }
  const param = /^[0-9a-f]{40}$/.test(tag) ? `rev=${tag}` : `ref=${tag}`;
  return base + (base.includes('?') ? '&' : '?') + param;
}

/** The registry answer for a refused build; anything unexpected stays a 500. */
export function nixFailure(err: unknown): RegistryError | undefined {
  if (err instanceof RegistryError) return err;
  if (err instanceof NixFailed) {
    if (/does not provide attribute|attribute '.*' missing/.test(err.output)) return new RegistryError('MANIFEST_UNKNOWN', err.message);
    if (/Cannot find Git revision|cannot find ref|couldn't find remote ref|failed to fetch/i.test(err.output)) return new RegistryError('MANIFEST_UNKNOWN', err.message);
    return new RegistryError('MANIFEST_UNKNOWN', err.message, { status: 422 });
  }
  if (err instanceof ArchiveInvalid) return new RegistryError('MANIFEST_UNKNOWN', err.message, { status: 422 });
  if (err instanceof NixTimeout) return new RegistryError('UNAVAILABLE', err.message, { status: 504 });
  if (err instanceof NixMissing) return new RegistryError('UNAVAILABLE', err.message);
  return undefined;
}
