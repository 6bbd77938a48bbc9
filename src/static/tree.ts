import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { SingleFlight } from '../util/single-flight.js';
import { BlobFiles } from './blob-file.js';
import { ConfinedRoot } from './confined.js';
import { isCurrent, isCurrentNow, readRepository, type Stamp, type StaticRepository } from './repository.js';

/** Manifest bytes held for repositories read recently; older ones are read again when asked for. */
const CACHE_BYTES = 64 * 1024 * 1024;
/**
 * How long a stat that found a kept manifest's file unchanged vouches for it: a manifest
 * served from the kept view may be up to this old. A stat per request was a quarter of a
 * cached manifest's time (bench/static); one per file per second costs nothing.
 */
export const RECHECK_MS = 1000;

/** What a lookup found in a repository, and the files whose stats vouch that it still holds. */
export interface Found<T> {
  value: T;
  sources: Stamp[];
}

/**
 * A directory of images served as it is on disk. Each repository is read once and kept
 * while the files it was read from are unchanged, so edits, new tags and `hardlink` runs
 * are seen without a restart. A request that finds what it wants in the kept view checks
 * only the file that put it there (one stat: a tag's manifest.json, a layout's
 * index.json), and no more than once per RECHECK_MS; anything else (a miss, a tag list)
 * checks every directory and file the view was read from, and reads the repository again
 * when one changed. The one stat of a hit is synchronous (see isCurrentNow): a root on a
 * network file system is not supported.
 */
export class StaticTree {
  private readonly cache = new LRUCache<string, StaticRepository>({
    maxSize: CACHE_BYTES,
    sizeCalculation: (repo) => 1024 + [...repo.manifests.values()].reduce((sum, m) => sum + m.bytes.length, 0),
  });
  private readonly reads = new SingleFlight<StaticRepository | undefined>();
  /**
   * Requests arriving while a check of the same files is in flight share it: under load
   * one round of stats answers many requests (stats were the largest cost per manifest).
   */
  private readonly checks = new SingleFlight<boolean>();
  /** When each kept view's source was last found unchanged (performance.now()). */
  private readonly verified = new WeakMap<Stamp, number>();

  /** The root every file is read inside of. */
  readonly confined: ConfinedRoot;
  /** The tree's blob files, checked against their digests. */
  readonly blobFiles: BlobFiles;

  constructor(readonly root: string) {
    this.confined = new ConfinedRoot(root);
    this.blobFiles = new BlobFiles(this.confined);
  }

  private current(key: string, stamps: readonly Stamp[]): Promise<boolean> {
    return this.checks.run(key, () => isCurrent(stamps));
  }

  /**
   * isCurrentNow, trusted for RECHECK_MS after it last said yes: until when (performance.now()
   * time) the sources are vouched for, or undefined when one of them changed.
   */
  private currentUntil(sources: readonly Stamp[]): number | undefined {
    const now = performance.now();
    let until = now + RECHECK_MS;
    for (const s of sources) until = Math.min(until, (this.verified.get(s) ?? -Infinity) + RECHECK_MS);
    if (now < until) return until;
    if (!isCurrentNow(sources)) return undefined;
    for (const s of sources) this.verified.set(s, now);
    return now + RECHECK_MS;
  }

  /**
   * The repository `name` (relative to the root), checked in full. Undefined for a name
   * with an empty, `.` or `..` component (the router lets none through; this keeps the
   * tree safe without it). TreeProblem when it cannot be read (see readRepository).
   */
  async repository(name: string): Promise<StaticRepository | undefined> {
    if (name.split('/').some((part) => part === '' || part === '.' || part === '..')) return undefined;
    const cached = this.cache.get(name);
    if (cached && (await this.current(`repository\0${name}`, cached.stamps))) return cached;
    return this.reads.run(name, async () => {
      const repo = await readRepository(this.confined, name, path.join(this.root, ...name.split('/')));
      if (repo) this.cache.set(name, repo);
      else this.cache.delete(name);
      return repo;
    });
  }

  /**
   * Looks `find` up in the repository: from the kept view when its sources are unchanged,
   * else from a fully checked one. Undefined when there is no such repository.
   */
  async lookup<T>(name: string, find: (repo: StaticRepository) => Found<T> | undefined): Promise<{ value?: T } | undefined> {
    const kept = this.lookupNow(name, find);
    if (kept !== undefined) return { value: kept.value };
    const repo = await this.repository(name);
    return repo && { value: find(repo)?.value };
  }

  /**
   * What `find` finds in the kept view when its sources still vouch for it, without
   * waiting on anything, and until when they do (see currentUntil); else undefined.
   */
  lookupNow<T>(name: string, find: (repo: StaticRepository) => Found<T> | undefined): { value: T; freshUntil: number } | undefined {
    const cached = this.cache.get(name);
    const hit = cached && find(cached);
    if (!hit) return undefined;
    const freshUntil = this.currentUntil(hit.sources);
    return freshUntil === undefined ? undefined : { value: hit.value, freshUntil };
  }
}
