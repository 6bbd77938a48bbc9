import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { ContentStore } from '../content/store.js';
import type { Config } from '../config.js';
import type { Descriptor } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import { ArchiveInvalid, importImageArchive } from '../nix/docker-archive.js';
import { imageOutputKind, importStreamScript, writeLayerConfigImage } from '../nix/image-outputs.js';
import { REVISION_ANNOTATION, writeNixImage } from '../nix/image.js';
import { checkResolution, FLAKE_PREFIX, parsePackages } from '../nix/packages.js';
import { NixFailed, NixMissing, NixTimeout } from '../nix/run.js';
import { NixTool } from '../nix/tool.js';
import { PackageSets, parsePackageSource, resolveGitTag } from '../nix/package-source.js';
import { createBuildFacility } from '../builds/index.js';
import type { BuildFacility } from '../builds/facility.js';
import type { JsonValue } from '../tasks/queue.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';

const PACKAGES_ANNOTATION = 'me.kontain.nix.packages';
const SOURCE_ANNOTATION = 'org.opencontainers.image.source';

/** What a nix build needs, on whichever instance runs it (the slow-build facility's payload). */
type NixJob =
  | { kind: 'packages'; expression: string; attrs: string[][]; shell: boolean; revision: string }
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
  private readonly store: ContentStore;
  private readonly config: Config;
  private readonly nix: NixTool;
  private readonly facility: BuildFacility;
  private readonly packageSets?: PackageSets;

  constructor(context: GeneratorContext) {
    this.store = context.store;
    this.config = context.config;
    this.nix = new NixTool({ timeoutMs: context.config.nixBuildTimeoutSeconds * 1000, maxBuilds: context.config.nixMaxBuilds });
    this.facility = context.builds ?? createBuildFacility(context);
    if (context.config.nixPackages) {
      this.packageSets = new PackageSets(parsePackageSource(context.config.nixPackages), {
        timeoutMs: context.config.builds.gitTimeoutSeconds * 1000,
        evaluateRevision: async (expression, signal) => (await this.nix.resolve(expression, [], signal)).revision,
      });
    }
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
    if (!this.packageSets) throw new RegistryError('NAME_UNKNOWN', 'this server has no Nix package set (KONTAIN_NIX_PACKAGES is not set)');
    const wanted = parsePackages(request.repository);
    const set = await this.packageSets.at(request.tag, request.signal);
    const key = createHash('sha256')
      .update(JSON.stringify({ source: this.config.nixPackages, revision: set.revision, packages: wanted.packages, shell: wanted.shell, layers: this.config.nixMaxLayers }))
      .digest('hex');
    const label = `nix ${wanted.packages.join(' ')} (${set.via} ${set.revision.slice(0, 12)})`;
    // An image made before is served without running Nix; only a new one is evaluated.
    const made = await this.madeBefore(key);
    if (made) return made;
    const resolution = await this.nix.resolve(set.expression, wanted.packages, request.signal);
    const attrs = checkResolution(wanted, resolution);
    request.log?.info({ service: this.service, revision: set.revision, via: set.via }, 'nix package set');
    const job: NixJob = { kind: 'packages', expression: set.expression, attrs, shell: wanted.shell, revision: set.revision };
    return this.obtain(key, label, job, request);
  }

  private async flakeImage(request: TagRequest, attr: string): Promise<Descriptor> {
    const flake = this.config.nixFlake;
    if (!flake) throw new RegistryError('NAME_UNKNOWN', 'this server serves no flake (KONTAIN_NIX_FLAKE is not set)');
    if (!/^[a-z0-9_][a-z0-9_.-]*$/.test(attr) || attr.includes('/') || attr.split('.').some((p) => !p)) {
      throw new RegistryError('NAME_INVALID', `nix/${FLAKE_PREFIX}<attr> takes one flake output attribute, dots between names (got ${attr || 'nothing'})`);
    }
    const pinned = await this.flakeAt(flake, request.tag);
    const source = `${flake}#${attr}`;
    if (pinned) {
      // A git flake at a commit: the image is known by the commit, no Nix needed to name it.
      const key = createHash('sha256').update(JSON.stringify({ flake, commit: pinned.commit, attr, layers: this.config.nixMaxLayers })).digest('hex');
      const made = await this.madeBefore(`flake-${key}`);
      if (made) return made;
      const job: NixJob = { kind: 'flake', flakeRef: pinned.flakeRef, attr, revision: pinned.commit, source };
      return this.obtain(`flake-${key}`, `nix ${source} (${pinned.via})`, job, request);
    }
    const metadata = await this.nix.flakeMetadata(flake, request.signal);
    const key = createHash('sha256').update(JSON.stringify({ flake: metadata.locked, attr, layers: this.config.nixMaxLayers })).digest('hex');
    const revision = metadata.revision ?? String(metadata.locked.narHash ?? '');
    const job: NixJob = { kind: 'flake', flakeRef: flake, attr, revision, source };
    return this.obtain(`flake-${key}`, `nix ${source} (${request.tag})`, job, request);
  }

  /**
   * A git flake at the commit the tag names (`latest`: its default branch); undefined for
   * `latest` of a flake that is not a git URL (a path is read as it is, by Nix).
   */
  private async flakeAt(flake: string, tag: string): Promise<{ flakeRef: string; commit: string; via: string } | undefined> {
    const git = flakeGitURL(flake);
    if (!git) {
      if (tag === 'latest') return undefined;
      throw new RegistryError('MANIFEST_UNKNOWN', `the flake ${flake} is not a git repository, so the only tag is latest (got ${tag})`);
    }
    if (tag === 'latest' && flake.startsWith('/')) return undefined;
    const { commit, via } = await resolveGitTag(git.url, tag === 'latest' ? (git.ref ?? 'HEAD') : tag, this.config.builds.gitTimeoutSeconds * 1000);
    return { flakeRef: `git+${git.url}?rev=${commit}&allRefs=1${git.dir ? `&dir=${encodeURIComponent(git.dir)}` : ''}`, commit, via };
  }

  /** The image a key was made into before, if it is still in the store. */
  private async madeBefore(key: string): Promise<Descriptor | undefined> {
    const pointer = await this.store.getPointer(this.service, key);
    return pointer && (await this.store.getManifest(pointer.descriptor.digest)) ? pointer.descriptor : undefined;
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
      const outputs = await this.nix.buildPackages(job.expression, job.attrs);
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
    const kind = only ? await imageOutputKind(only) : undefined;
    if (kind === 'archive') return importImageArchive(this.store, only!, annotations);
    if (kind === 'stream-script') {
      const limits = { workDir: this.config.builds.workDir, timeoutMs: this.config.nixBuildTimeoutSeconds * 1000, maxBytes: this.config.derivedMaxBytes };
      return importStreamScript(this.store, only!, limits, annotations);
    }
    const closure = await this.nix.closure(outputs);
    if (kind === 'layer-config') return writeLayerConfigImage(this.store, only!, closure, annotations);
    return writeNixImage(this.store, { closure, packagePaths: outputs, shell: false, maxLayers: this.config.nixMaxLayers, annotations });
  }
}

/**
 * The git repository of a flake reference: a local path (read as `git+file://`),
 * `git+<url>`, or `github:owner/repo`; undefined for other flake references.
 */
export function flakeGitURL(flake: string): { url: string; ref?: string; dir?: string } | undefined {
  if (flake.startsWith('/')) return { url: `file://${path.resolve(flake)}` };
  let url: URL;
  if (flake.startsWith('git+')) url = new URL(flake.slice('git+'.length));
  else if (flake.startsWith('github:')) url = new URL(`https://github.com/${flake.slice('github:'.length).split('?')[0]}${flake.includes('?') ? flake.slice(flake.indexOf('?')) : ''}`);
  else return undefined;
  const ref = url.searchParams.get('ref') ?? undefined;
  const dir = url.searchParams.get('dir') ?? undefined;
  url.search = '';
  return { url: url.toString(), ref, dir };
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
