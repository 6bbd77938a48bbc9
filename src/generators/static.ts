import type { Logger } from 'pino';
import type { StoredManifest } from '../oci/types.js';
import { ACTIONABLE_STATUS, RegistryError } from '../registry/errors.js';
import type { Reference } from '../registry/names.js';
import type { ByteRange } from '../storage/backend.js';
import { StaticTree, type Found } from '../static/tree.js';
import { TreeProblem } from '../static/confined.js';
import type { Broken, SourcedManifest, StaticRepository } from '../static/repository.js';
import type { BlobSource, Generator, ReadyManifest, TagPage, TagRequest } from './generator.js';

export interface StaticOptions {
  /** The directory of images (skopeo `dir:` copies and OCI layouts). */
  root: string;
  /** Prepended to every name (`team` serves `<root>/app/1/` as `static/team/app:1`); empty for none. */
  prefix: string;
}

/**
 * The static host: a directory of images served as it is, read-only. Nothing is copied
 * into the store: manifests and blobs come from the tree on every request.
 */
export class StaticGenerator implements Generator {
  readonly service = 'static';
  readonly storeless = true;
  private readonly tree: StaticTree;
  private readonly prefix: string;

  constructor(options: StaticOptions) {
    this.tree = new StaticTree(options.root);
    this.prefix = options.prefix.replace(/^\/+|\/+$/g, '');
  }

  /** The name relative to the tree, or undefined when it lacks the prefix. */
  private relative(name: string): string | undefined {
    if (!this.prefix) return name || undefined;
    return name.startsWith(`${this.prefix}/`) ? name.slice(this.prefix.length + 1) : undefined;
  }

  private nameUnknown(name: string): RegistryError {
    const where = this.prefix ? ` (names here start with ${this.prefix}/)` : '';
    return new RegistryError('NAME_UNKNOWN', `no repository ${JSON.stringify(name)} in the static tree${where}`, { detail: { name } });
  }

  /** Finds something in the repository a request names; NAME_UNKNOWN when there is no such repository. */
  private async lookup<T>(name: string, find: (repo: StaticRepository) => Found<T> | undefined): Promise<T | undefined> {
    const relative = this.relative(name);
    const found = relative ? await this.tree.lookup(relative, find).catch(treeError(name)) : undefined;
    if (!found) throw this.nameUnknown(name);
    return found.value;
  }

  async manifest(request: TagRequest): Promise<StoredManifest> {
    const found = await this.lookup(request.repository, byTag(request.tag));
    if (found && 'problem' in found) throw unservable(`${request.repository}:${request.tag}`, found.problem);
    if (!found) {
      throw new RegistryError('MANIFEST_UNKNOWN', `no tag ${JSON.stringify(request.tag)} in ${request.repository}`, { detail: { tag: request.tag } });
    }
    return found;
  }

  async fetchManifest(repository: string, digest: string): Promise<StoredManifest | undefined> {
    const found = await this.lookup(repository, byDigest(digest));
    if (found && 'problem' in found) throw unservable(`${repository}@${digest}`, found.problem);
    return found;
  }

  /** A manifest the kept view holds and still vouches for; anything else (broken ones too) is left to the async methods. */
  manifestNow(repository: string, reference: Reference): ReadyManifest | undefined {
    const relative = this.relative(repository);
    const found = relative && this.tree.lookupNow(relative, reference.tag !== undefined ? byTag(reference.tag) : byDigest(reference.digest));
    return found && !('problem' in found.value) ? { manifest: found.value, freshUntil: found.freshUntil } : undefined;
  }

  async fetchBlob(repository: string, digest: string, _log: Logger): Promise<BlobSource | undefined> {
    const locations = await this.lookup(repository, (repo) => {
      const found = repo.blobs.get(digest);
      return found && { value: found, sources: [found[0]!.source] };
    });
    const what = `${repository}@${digest}`;
    const file = locations && (await this.tree.blobFiles.find(digest, locations).catch(treeError(what)));
    if (!file) return undefined;
    return { size: file.size, open: (range?: ByteRange) => this.tree.blobFiles.open(digest, file, range).catch(treeError(what)) };
  }

  async tags(repository: string, page: { n?: number; last?: string }): Promise<TagPage> {
    const relative = this.relative(repository);
    const repo = relative ? await this.tree.repository(relative).catch(treeError(repository)) : undefined;
    if (!repo) throw this.nameUnknown(repository);
    if (repo.tags.size === 0 && repo.problems[0]) throw unservable(repository, repo.problems[0].problem);
    return pageOf([...repo.tags.keys()].sort(), page);
  }
}

/**
 * What the tree holds cannot be served as it is (a symlink out of the root, a manifest too
 * large or not JSON, a blob that does not match its digest): the operator's to mend, said
 * with the status the project answers broken upstream content with, so clients print it.
 */
function unservable(what: string, problem: string): RegistryError {
  return new RegistryError('UNAVAILABLE', `static ${what} cannot be served: ${problem}`, { status: ACTIONABLE_STATUS.upstreamFailed });
}

/** Turns a TreeProblem into that answer; anything else is rethrown as it is. */
const treeError = (what: string) => (err: unknown): never => {
  if (err instanceof TreeProblem) throw unservable(what, err.message);
  throw err;
};

const sourced = (manifest: SourcedManifest | undefined): Found<SourcedManifest> | undefined => manifest && { value: manifest, sources: [manifest.source] };

type ManifestFinder = (repo: StaticRepository) => Found<SourcedManifest | Broken> | undefined;

/** A tag's manifest, vouched for by the tag's own file; or why the tag (or the repository) cannot be served. */
const byTag = (tag: string): ManifestFinder => (repo) => {
  const pointer = repo.tags.get(tag);
  const manifest = pointer && repo.manifests.get(pointer.digest);
  if (manifest) return { value: manifest, sources: [pointer.source] };
  const broken = repo.brokenTags.get(tag) ?? repo.problems[0];
  return broken && { value: broken, sources: [broken.source] };
};

/** A manifest of the repository by digest, or why it cannot be served. */
const byDigest = (digest: string): ManifestFinder => (repo) => {
  const manifest = repo.manifests.get(digest);
  if (manifest) return sourced(manifest);
  const broken = repo.brokenManifests.get(digest);
  return broken && { value: broken, sources: [broken.source] };
};

/** One page of a sorted tag list: the tags after `last`, at most `n`, and where the next page starts. */
export function pageOf(sorted: string[], page: { n?: number; last?: string }): TagPage {
  const after = page.last === undefined ? sorted : sorted.filter((tag) => tag > page.last!);
  if (page.n === undefined || after.length <= page.n) return { tags: after };
  const tags = after.slice(0, page.n);
  return tags.length > 0 ? { tags, next: tags[tags.length - 1] } : { tags };
}
