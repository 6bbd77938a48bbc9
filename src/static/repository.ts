import { open, readdir, stat } from 'node:fs/promises';
import { statSync, type Stats } from 'node:fs';
import path from 'node:path';
import { isSha256Digest, digestHex } from '../oci/digest.js';
import { isIndexType } from '../oci/mediatypes.js';
import { mapConcurrent } from '../util/concurrency.js';
import { MAX_MANIFEST_BYTES, parseManifestFile, type ManifestFile } from './manifest-file.js';

const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const REF_NAME = 'org.opencontainers.image.ref.name';
/** Index nesting followed in an OCI layout; deeper ones are not images a client pulls. */
const MAX_INDEX_DEPTH = 4;

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

/** A file holding a blob, and the file whose manifests reference it. */
export interface BlobLocation {
  path: string;
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

/** A manifest file's bytes if it exists, is a regular file and is small enough; else undefined. */
async function readManifestBytes(file: string): Promise<{ bytes: Buffer; stats: Stats } | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile() || stats.size > MAX_MANIFEST_BYTES) return undefined;
    return { bytes: await handle.readFile(), stats };
  } finally {
    await handle.close();
  }
}

class RepositoryReader {
  readonly repo: StaticRepository;

  constructor(name: string, dir: string, dirStats: Stats) {
    this.repo = { name, dir, tags: new Map(), manifests: new Map(), blobs: new Map(), stamps: [stampOf(dir, dirStats)] };
  }

  private addBlob(digest: string, location: BlobLocation): void {
    const locations = this.repo.blobs.get(digest);
    if (!locations) this.repo.blobs.set(digest, [location]);
    else if (!locations.some((l) => l.path === location.path)) locations.push(location);
  }

  private addManifest(manifest: ManifestFile, blobDir: string, source: Stamp): void {
    if (!this.repo.manifests.has(manifest.digest)) this.repo.manifests.set(manifest.digest, { ...manifest, source });
    for (const blob of manifest.blobs) {
      if (isSha256Digest(blob)) this.addBlob(blob, { path: path.join(blobDir, digestHex(blob)), source });
    }
  }

  /** A skopeo `dir:` copy at `<repo>/<tag>/`: manifest.json, `<hex>.manifest.json` per instance, blobs by hex. */
  async readDirCopy(tag: string): Promise<void> {
    const tagDir = path.join(this.repo.dir, tag);
    const tagDirStats = await stat(tagDir);
    if (!tagDirStats.isDirectory()) return;
    this.repo.stamps.push(stampOf(tagDir, tagDirStats));
    const file = path.join(tagDir, 'manifest.json');
    const read = await readManifestBytes(file);
    if (!read) return;
    const top = parseManifestFile(file, read.bytes);
    if (!top) return;
    const source = stampOf(file, read.stats);
    this.repo.stamps.push(source);
    this.repo.tags.set(tag, { digest: top.digest, source });
    this.addManifest(top, tagDir, source);
    if (!isIndexType(top.mediaType)) return;
    for (const child of top.children) {
      if (!isSha256Digest(child)) continue;
      const childFile = path.join(tagDir, `${digestHex(child)}.manifest.json`);
      const childRead = await readManifestBytes(childFile);
      const manifest = childRead && parseManifestFile(childFile, childRead.bytes);
      // A file whose bytes do not hash to its name is not that manifest.
      if (manifest?.digest === child) this.addManifest(manifest, tagDir, source);
    }
  }

  /** An OCI image layout at `<repo>/`: tags are index.json entries' ref.name annotations. */
  async readOciLayout(): Promise<void> {
    const indexFile = path.join(this.repo.dir, 'index.json');
    const read = await readManifestBytes(indexFile);
    if (!read) return;
    const source = stampOf(indexFile, read.stats);
    this.repo.stamps.push(source);
    let index: { manifests?: Array<{ digest?: unknown; annotations?: Record<string, unknown> }> };
    try {
      index = JSON.parse(read.bytes.toString('utf8')) as typeof index;
    } catch {
      return;
    }
    const blobDir = path.join(this.repo.dir, 'blobs', 'sha256');
    const entries = Array.isArray(index?.manifests) ? index.manifests : [];
    for (const entry of entries) {
      const digest = entry?.digest;
      if (typeof digest !== 'string' || !isSha256Digest(digest)) continue;
      if (!(await this.readLayoutManifest(blobDir, digest, 0, source))) continue;
      const tag = entry.annotations?.[REF_NAME];
      // Later entries win, as a layout's writer replaces a tag by appending it.
      if (typeof tag === 'string' && TAG.test(tag)) this.repo.tags.set(tag, { digest, source });
    }
  }

  private async readLayoutManifest(blobDir: string, digest: string, depth: number, source: Stamp): Promise<boolean> {
    if (this.repo.manifests.has(digest)) return true;
    const file = path.join(blobDir, digestHex(digest));
    const read = await readManifestBytes(file);
    const manifest = read && parseManifestFile(file, read.bytes);
    if (manifest?.digest !== digest) return false;
    this.addManifest(manifest, blobDir, source);
    if (depth < MAX_INDEX_DEPTH) {
      for (const child of manifest.children) if (isSha256Digest(child)) await this.readLayoutManifest(blobDir, child, depth + 1, source);
    }
    return true;
  }
}

/**
 * Reads the repository at `dir` (`name` relative to the root). Undefined when the
 * directory holds no image: no tag directory with a manifest.json and no OCI layout.
 */
export async function readRepository(name: string, dir: string): Promise<StaticRepository | undefined> {
  let dirStats: Stats;
  let entries;
  try {
    dirStats = await stat(dir);
    if (!dirStats.isDirectory()) return undefined;
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return undefined;
  }
  const reader = new RepositoryReader(name, dir, dirStats);
  const tagDirs = entries.filter((e) => (e.isDirectory() || e.isSymbolicLink()) && TAG.test(e.name)).map((e) => e.name).sort();
  await mapConcurrent(tagDirs, 8, (tag) => reader.readDirCopy(tag).catch(() => undefined));
  if (entries.some((e) => e.name === 'oci-layout')) await reader.readOciLayout();
  const repo = reader.repo;
  return repo.tags.size > 0 ? repo : undefined;
}

/** The first of a blob's files that exists, with its size. */
export async function findBlobFile(locations: readonly BlobLocation[]): Promise<{ path: string; size: number } | undefined> {
  for (const location of locations) {
    const s = await stat(location.path).catch(() => undefined);
    if (s?.isFile()) return { path: location.path, size: s.size };
  }
  return undefined;
}

/** Every repository under `root`, any depth, sorted by name (for the export). */
export async function listRepositories(root: string): Promise<StaticRepository[]> {
  const found: StaticRepository[] = [];
  const NAME_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
  async function walk(dir: string, name: string): Promise<void> {
    if (name) {
      const repo = await readRepository(name, dir);
      if (repo) found.push(repo);
    }
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isDirectory() || !NAME_COMPONENT.test(entry.name)) continue;
      await walk(path.join(dir, entry.name), name ? `${name}/${entry.name}` : entry.name);
    }
  }
  await walk(root, '');
  return found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
