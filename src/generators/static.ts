import type { Logger } from 'pino';
import type { StoredManifest } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import type { ByteRange } from '../storage/backend.js';
import { openFileRange } from '../storage/file-range-stream.js';
import { StaticTree, type Found } from '../static/tree.js';
import { findBlobFile, type SourcedManifest, type StaticRepository } from '../static/repository.js';
import type { BlobSource, Generator, TagPage, TagRequest } from './generator.js';

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
  readonly summary = 'images from a directory of skopeo dir: copies and OCI layouts, served as they are on disk';
  readonly storeless = true;
  readonly examples: string[];
  private readonly tree: StaticTree;
  private readonly prefix: string;

  constructor(options: StaticOptions) {
    this.tree = new StaticTree(options.root);
    this.prefix = options.prefix.replace(/^\/+|\/+$/g, '');
    this.examples = [`static/${this.prefix ? `${this.prefix}/` : ''}<name>:<tag>`];
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
    const found = relative ? await this.tree.lookup(relative, find) : undefined;
    if (!found) throw this.nameUnknown(name);
    return found.value;
  }

  async manifest(request: TagRequest): Promise<StoredManifest> {
    const manifest = await this.lookup(request.repository, (repo) => {
      const tag = repo.tags.get(request.tag);
      const found = tag && repo.manifests.get(tag.digest);
      return found && { value: found, sources: [tag.source] };
    });
    if (!manifest) {
      throw new RegistryError('MANIFEST_UNKNOWN', `no tag ${JSON.stringify(request.tag)} in ${request.repository}`, { detail: { tag: request.tag } });
    }
    return manifest;
  }

  async fetchManifest(repository: string, digest: string): Promise<StoredManifest | undefined> {
    return this.lookup(repository, (repo) => sourced(repo.manifests.get(digest)));
  }

  async fetchBlob(repository: string, digest: string, _log: Logger): Promise<BlobSource | undefined> {
    const locations = await this.lookup(repository, (repo) => {
      const found = repo.blobs.get(digest);
      return found && { value: found, sources: [found[0]!.source] };
    });
    const file = locations && (await findBlobFile(locations));
    if (!file) return undefined;
    return { size: file.size, open: (range?: ByteRange) => openFileRange(file.path, range) };
  }

  async tags(repository: string, page: { n?: number; last?: string }): Promise<TagPage> {
    const relative = this.relative(repository);
    const repo = relative ? await this.tree.repository(relative) : undefined;
    if (!repo) throw this.nameUnknown(repository);
    return pageOf([...repo.tags.keys()].sort(), page);
  }
}

const sourced = (manifest: SourcedManifest | undefined): Found<SourcedManifest> | undefined => manifest && { value: manifest, sources: [manifest.source] };

/** One page of a sorted tag list: the tags after `last`, at most `n`, and where the next page starts. */
export function pageOf(sorted: string[], page: { n?: number; last?: string }): TagPage {
  const after = page.last === undefined ? sorted : sorted.filter((tag) => tag > page.last!);
  if (page.n === undefined || after.length <= page.n) return { tags: after };
  const tags = after.slice(0, page.n);
  return tags.length > 0 ? { tags, next: tags[tags.length - 1] } : { tags };
}
