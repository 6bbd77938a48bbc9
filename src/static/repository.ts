import { opendir, stat } from 'node:fs/promises';
import { statSync, type Stats } from 'node:fs';
import path from 'node:path';
import { isSha256Digest, digestHex } from '../oci/digest.js';
import { isIndexType } from '../oci/mediatypes.js';
import { mapConcurrent } from '../util/concurrency.js';
import { TreeProblem, type ConfinedRoot } from './confined.js';
import { MAX_MANIFEST_BYTES, checkManifestFile, type ManifestFile } from './manifest-file.js';

const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const REF_NAME = 'org.opencontainers.image.ref.name';
/** Index nesting followed in an OCI layout; deeper ones are not images a client pulls. */
const MAX_INDEX_DEPTH = 4;
/**
 * Entries of one repository directory read (tag directories, a layout's files), and
 * manifests read for one repository: a tree with more is refused rather than read for
 * every request that names it. Also what bounds a tag list.
 */
export const MAX_REPOSITORY_ENTRIES = 10_000;
/** Manifest bytes read for one repository (the tree's whole cache holds 64 MiB). */
export const MAX_REPOSITORY_MANIFEST_BYTES = 32 * 1024 * 1024;

/** A file's identity and version, to tell whether what was read from it is still current. */
export interface Stamp {
  path: string;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  /**
   * Changed so shortly before it was read that a further change may keep the same times
   * (file systems keep times in ticks of a few milliseconds to two seconds): such a stamp
   * never vouches for anything, so the file is read again until it has been still a while.
   */
  racy: boolean;
}

/** The coarsest time tick of the file systems a tree may live on (FAT keeps two seconds). */
const TIME_TICK_MS = 2000;

/** A manifest of the repository, and the file (a tag's manifest.json, a layout's index.json) that put it there. */
export interface SourcedManifest extends ManifestFile {
  source: Stamp;
}

/** A file holding a blob, the size its descriptor states, and the file whose manifests reference it. */
export interface BlobLocation {
  path: string;
  size?: number;
  source: Stamp;
}

/** Something named in the repository that cannot be served, why, and the file that says so. */
export interface Broken {
  problem: string;
  source: Stamp;
}

/**
 * One repository of the tree, read in full: its tags, every manifest its images reach,
 * and where each blob they reference lies. Both layouts may share one directory.
 */
export interface StaticRepository {
  /** The name relative to the tree root (`team/app`). */
  name: string;
  dir: string;
  /**
   * Tag → manifest digest, and the file that says so (the tag's manifest.json, the
   * layout's index.json). A manifest's own source may be another tag's file holding the
   * same bytes: only the tag's file vouches for what the tag points at.
   */
  tags: Map<string, { digest: string; source: Stamp }>;
  manifests: Map<string, SourcedManifest>;
  /** Digest → files that may hold it (a digest can be in several tags' directories). */
  blobs: Map<string, BlobLocation[]>;
  /** Tags whose directory or manifest cannot be served (out of the root, too large, not JSON), and why. */
  brokenTags: Map<string, Broken>;
  /** Manifests an index names whose file cannot be served, and why. */
  brokenManifests: Map<string, Broken>;
  /** Problems of the repository as a whole (its OCI layout's index.json). */
  problems: Broken[];
  /**
   * The directories and files this view was read from: the repository directory (tags
   * added or removed), each tag directory (a manifest.json appearing), each source.
   */
  stamps: Stamp[];
}

const stampOf = (file: string, s: Stats): Stamp => ({
  path: file,
  ino: s.ino,
  size: s.size,
  mtimeMs: s.mtimeMs,
  ctimeMs: s.ctimeMs,
  racy: Date.now() - Math.max(s.mtimeMs, s.ctimeMs) < TIME_TICK_MS,
});

const unchanged = (old: Stamp, now: Stats | undefined): boolean =>
  now !== undefined && now.ino === old.ino && now.size === old.size && now.mtimeMs === old.mtimeMs && now.ctimeMs === old.ctimeMs;

/** True when every file a repository was read from is unchanged. */
export async function isCurrent(stamps: readonly Stamp[]): Promise<boolean> {
  if (stamps.some((s) => s.racy)) return false;
  const now = await Promise.all(stamps.map((s) => stat(s.path).catch(() => undefined)));
  return now.every((s, i) => unchanged(stamps[i]!, s));
}

/**
 * isCurrent with synchronous stats, for the one file that vouches for a kept answer (a
 * tag's manifest.json, a layout's index.json). The root is a local directory the operator
 * names; a stat of it takes microseconds, while a round trip through the thread pool per
 * request left the event loop idle 40% of the time under load (measured: bench/static).
 */
export function isCurrentNow(stamps: readonly Stamp[]): boolean {
  if (stamps.some((s) => s.racy)) return false;
  return stamps.every((old) => {
    try {
      return unchanged(old, statSync(old.path, { throwIfNoEntry: false }));
    } catch {
      return false;
    }
  });
}

const missing = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

/** TreeProblem for what cannot be read (out of the root, not a file, too large, unreadable); others rethrown. */
function asProblem(err: unknown, root: ConfinedRoot, file: string): TreeProblem {
  if (err instanceof TreeProblem) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') return new TreeProblem(`${root.relative(file)} is a symlink loop`);
  if (code) return new TreeProblem(`${root.relative(file)} cannot be read (${code})`);
  throw err;
}

class RepositoryReader {
  readonly repo: StaticRepository;
  private manifestBytes = 0;
  private manifestCount = 0;

  constructor(
    private readonly root: ConfinedRoot,
    name: string,
    dir: string,
    dirStats: Stats,
  ) {
    this.repo = {
      name, dir, tags: new Map(), manifests: new Map(), blobs: new Map(),
      brokenTags: new Map(), brokenManifests: new Map(), problems: [], stamps: [stampOf(dir, dirStats)],
    };
  }

  /**
   * A manifest file's bytes and stats, read inside the root and within the repository's
   * budget; undefined when there is no such file, TreeProblem when it cannot be served.
   */
  private async readManifestBytes(file: string): Promise<{ bytes: Buffer; stats: Stats } | undefined> {
    let read;
    try {
      read = await this.root.readSmallFile(file, MAX_MANIFEST_BYTES);
    } catch (err) {
      if (missing(err)) return undefined;
      throw asProblem(err, this.root, file);
    }
    this.manifestBytes += read.bytes.length;
    if (++this.manifestCount > MAX_REPOSITORY_ENTRIES || this.manifestBytes > MAX_REPOSITORY_MANIFEST_BYTES) {
      throw new RepositoryTooLarge(
        `${this.repo.name} holds more manifests than the static host reads for one repository (${MAX_REPOSITORY_ENTRIES} files, ${MAX_REPOSITORY_MANIFEST_BYTES} bytes)`,
      );
    }
    return read;
  }

  /** A stamp for a file that could not be read, so that a fix to it is seen. */
  private async problemStamp(file: string, fallback: Stamp): Promise<Stamp> {
    const s = await stat(file).catch(() => undefined);
    if (!s) return fallback;
    const stamp = stampOf(file, s);
    this.repo.stamps.push(stamp);
    return stamp;
  }

  private addBlob(digest: string, location: BlobLocation): void {
    const locations = this.repo.blobs.get(digest);
    if (!locations) this.repo.blobs.set(digest, [location]);
    else if (!locations.some((l) => l.path === location.path)) locations.push(location);
  }

  private addManifest(manifest: ManifestFile, blobDir: string, source: Stamp): void {
    if (!this.repo.manifests.has(manifest.digest)) this.repo.manifests.set(manifest.digest, { ...manifest, source });
    for (const blob of manifest.blobs) {
      if (isSha256Digest(blob)) this.addBlob(blob, { path: path.join(blobDir, digestHex(blob)), size: manifest.blobSizes.get(blob), source });
    }
  }

  /** A skopeo `dir:` copy at `<repo>/<tag>/`: manifest.json, `<hex>.manifest.json` per instance, blobs by hex. */
  async readDirCopy(tag: string): Promise<void> {
    const tagDir = path.join(this.repo.dir, tag);
    const dirStamp = this.repo.stamps[0]!;
    let tagDirStats;
    try {
      // Anything but a directory (a symlink to a file included) is no tag.
      tagDirStats = await stat(tagDir);
      if (!tagDirStats.isDirectory()) return;
      await this.root.resolve(tagDir);
    } catch (err) {
      if (missing(err)) return;
      this.repo.brokenTags.set(tag, { problem: asProblem(err, this.root, tagDir).message, source: await this.problemStamp(tagDir, dirStamp) });
      return;
    }
    const tagDirStamp = stampOf(tagDir, tagDirStats);
    this.repo.stamps.push(tagDirStamp);
    const file = path.join(tagDir, 'manifest.json');
    let top: ManifestFile;
    let source: Stamp;
    try {
      const read = await this.readManifestBytes(file);
      if (!read) return;
      source = stampOf(file, read.stats);
      this.repo.stamps.push(source);
      top = checkManifestFile(file, read.bytes, this.root.relative(file));
    } catch (err) {
      if (!(err instanceof TreeProblem)) throw err;
      this.repo.brokenTags.set(tag, { problem: err.message, source: await this.problemStamp(file, tagDirStamp) });
      return;
    }
    this.repo.tags.set(tag, { digest: top.digest, source });
    this.addManifest(top, tagDir, source);
    if (!isIndexType(top.mediaType)) return;
    for (const child of top.children) {
      if (!isSha256Digest(child) || this.repo.manifests.has(child)) continue;
      const childFile = path.join(tagDir, `${digestHex(child)}.manifest.json`);
      try {
        const childRead = await this.readManifestBytes(childFile);
        if (!childRead) continue;
        const manifest = checkManifestFile(childFile, childRead.bytes, this.root.relative(childFile));
        // A file whose bytes do not hash to its name is not that manifest.
        if (manifest.digest !== child) throw new TreeProblem(`${this.root.relative(childFile)} does not hash to ${child} (it is ${manifest.digest})`);
        this.addManifest(manifest, tagDir, source);
      } catch (err) {
        if (!(err instanceof TreeProblem)) throw err;
        this.repo.brokenManifests.set(child, { problem: err.message, source });
      }
    }
  }

  /** An OCI image layout at `<repo>/`: tags are index.json entries' ref.name annotations. */
  async readOciLayout(): Promise<void> {
    const indexFile = path.join(this.repo.dir, 'index.json');
    let read;
    try {
      read = await this.readManifestBytes(indexFile);
    } catch (err) {
      if (!(err instanceof TreeProblem)) throw err;
      this.repo.problems.push({ problem: err.message, source: await this.problemStamp(indexFile, this.repo.stamps[0]!) });
      return;
    }
    if (!read) return;
    const source = stampOf(indexFile, read.stats);
    this.repo.stamps.push(source);
    let index: { manifests?: Array<{ digest?: unknown; annotations?: Record<string, unknown> }> };
    try {
      index = JSON.parse(read.bytes.toString('utf8')) as typeof index;
    } catch (err) {
      this.repo.problems.push({ problem: `${this.root.relative(indexFile)} is not valid JSON (${(err as Error).message})`, source });
      return;
    }
    const blobDir = path.join(this.repo.dir, 'blobs', 'sha256');
    const entries = Array.isArray(index?.manifests) ? index.manifests : [];
    for (const entry of entries) {
      const digest = entry?.digest;
      if (typeof digest !== 'string' || !isSha256Digest(digest)) continue;
      const tag = entry.annotations?.[REF_NAME];
      const taggable = typeof tag === 'string' && TAG.test(tag);
      try {
        if (!(await this.readLayoutManifest(blobDir, digest, 0, source))) continue;
      } catch (err) {
        if (!(err instanceof TreeProblem)) throw err;
        this.repo.brokenManifests.set(digest, { problem: err.message, source });
        if (taggable) this.repo.brokenTags.set(tag, { problem: err.message, source });
        continue;
      }
      // Later entries win, as a layout's writer replaces a tag by appending it.
      if (taggable) {
        this.repo.tags.set(tag, { digest, source });
        this.repo.brokenTags.delete(tag);
      }
    }
  }

  private async readLayoutManifest(blobDir: string, digest: string, depth: number, source: Stamp): Promise<boolean> {
    if (this.repo.manifests.has(digest)) return true;
    const file = path.join(blobDir, digestHex(digest));
    const read = await this.readManifestBytes(file);
    if (!read) return false;
    const manifest = checkManifestFile(file, read.bytes, this.root.relative(file));
    if (manifest.digest !== digest) throw new TreeProblem(`${this.root.relative(file)} does not hash to its name (it is ${manifest.digest})`);
    this.addManifest(manifest, blobDir, source);
    if (depth < MAX_INDEX_DEPTH) {
      for (const child of manifest.children) {
        if (!isSha256Digest(child)) continue;
        try {
          await this.readLayoutManifest(blobDir, child, depth + 1, source);
        } catch (err) {
          if (!(err instanceof TreeProblem)) throw err;
          this.repo.brokenManifests.set(child, { problem: err.message, source });
        }
      }
    }
    return true;
  }
}

/** A repository with more in it than the static host reads; answered as an error, never read in part. */
export class RepositoryTooLarge extends TreeProblem {}

/**
 * Up to `max` entries of a directory, read as a stream (a directory of a million entries
 * is not listed whole into memory); RepositoryTooLarge past that.
 */
async function boundedEntries(dir: string, max: number, what: () => string): Promise<Array<{ name: string; isDirectory: boolean; isSymbolicLink: boolean }>> {
  const entries = [];
  for await (const entry of await opendir(dir, { bufferSize: 256 })) {
    if (entries.length === max) throw new RepositoryTooLarge(`${what()} has more than ${max} entries, more than the static host reads for one repository`);
    entries.push({ name: entry.name, isDirectory: entry.isDirectory(), isSymbolicLink: entry.isSymbolicLink() });
  }
  return entries;
}

/**
 * Reads the repository at `dir` (`name` relative to the root). Undefined when the
 * directory holds no image: no tag directory with a manifest.json and no OCI layout, and
 * nothing broken that would have been one. TreeProblem when the directory leads out of the
 * root or holds more than the static host reads (RepositoryTooLarge).
 */
export async function readRepository(root: ConfinedRoot, name: string, dir: string): Promise<StaticRepository | undefined> {
  let dirStats: Stats;
  let entries;
  try {
    await root.resolve(dir);
    dirStats = await stat(dir);
    if (!dirStats.isDirectory()) return undefined;
    entries = await boundedEntries(dir, MAX_REPOSITORY_ENTRIES, () => name);
  } catch (err) {
    if (err instanceof TreeProblem) throw err;
    if (missing(err)) return undefined;
    throw asProblem(err, root, dir);
  }
  const reader = new RepositoryReader(root, name, dir, dirStats);
  const tagDirs = entries.filter((e) => (e.isDirectory || e.isSymbolicLink) && TAG.test(e.name)).map((e) => e.name).sort();
  await mapConcurrent(tagDirs, 8, (tag) => reader.readDirCopy(tag));
  if (entries.some((e) => e.name === 'oci-layout')) await reader.readOciLayout();
  const repo = reader.repo;
  return repo.tags.size > 0 || repo.brokenTags.size > 0 || repo.problems.length > 0 ? repo : undefined;
}

/** Deepest name the export walks to: a distribution name is at most 255 characters. */
const MAX_NAME_LENGTH = 255;

/**
 * Every repository under `root`, any depth, sorted by name (for the export). Directories
 * are walked without following symlinks (no loops, nothing outside), at most
 * MAX_REPOSITORY_ENTRIES entries each and down to names of 255 characters; a repository
 * that cannot be read is passed to `skipped` and left out.
 */
export async function listRepositories(root: ConfinedRoot, skipped: (problem: string) => void = () => undefined): Promise<StaticRepository[]> {
  const found: StaticRepository[] = [];
  const NAME_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
  async function walk(dir: string, name: string): Promise<void> {
    if (name) {
      try {
        const repo = await readRepository(root, name, dir);
        if (repo) found.push(repo);
      } catch (err) {
        if (!(err instanceof TreeProblem)) throw err;
        skipped(err.message);
        return;
      }
    }
    let entries;
    try {
      entries = await boundedEntries(dir, MAX_REPOSITORY_ENTRIES, () => name || 'the static root');
    } catch (err) {
      if (err instanceof TreeProblem) skipped(err.message);
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory || !NAME_COMPONENT.test(entry.name)) continue;
      const child = name ? `${name}/${entry.name}` : entry.name;
      if (child.length > MAX_NAME_LENGTH) {
        skipped(`${child.slice(0, 60)}…: names under it are longer than ${MAX_NAME_LENGTH} characters`);
        continue;
      }
      await walk(path.join(dir, entry.name), child);
    }
  }
  await walk(root.root, '');
  return found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
