import { BatchedFileWriter } from './batched-file-writer.js';
import { openFileRange } from './file-range-stream.js';
import { mkdir, open, link, rename, unlink, stat, readFile, readdir, rm, utimes } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { ownedPrefix, removeAbandoned, type LeftoverSweep } from '../util/leftovers.js';
import { ObjectNotFound, type ByteRange, type ObjectInfo, type StorageBackend, type WriteOptions } from './backend.js';


const META_SUFFIX = '.meta.json'; // `<name>.<inode>.meta.json`; bare `<name>.meta.json` is the older layout, still read
const TMP_DIR = '.tmp';
/** Temp files name their process, so a sweep can tell a crashed writer's from a live one's. */
const tempName = () => `${ownedPrefix('')}${randomUUID()}`;

interface Sidecar {
  contentType: string;
  metadata: Record<string, string>;
}

/**
 * The embedded default store: one directory. An object is written to a temp file,
 * fsynced, then hard-linked under its final name (link fails if the name exists, which
 * gives create-if-absent atomically); a crash leaves at most a stray temp file, never a
 * half-written object under its final name. Content type and metadata live in a small
 * sidecar written before the object appears. The sidecar's name carries the file's
 * inode (`<name>.<ino>.meta.json`; a hard link keeps the inode), so a writer that loses
 * the race can never overwrite the winner's sidecar, and the object never appears
 * without its own.
 */
export class FsBackend implements StorageBackend {
  readonly description: string;

  constructor(private readonly root: string) {
    this.root = path.resolve(root);
    this.description = `fs:${this.root}`;
  }

  private pathOf(name: string): string {
    const clean = path.posix.normalize(name);
    if (clean.startsWith('..') || path.posix.isAbsolute(clean) || clean.includes('\0') || clean.startsWith(TMP_DIR + '/')) {
      throw new Error(`invalid object name ${JSON.stringify(name)}`);
    }
    return path.join(this.root, clean);
  }

  async touch(name: string): Promise<void> {
    const now = new Date();
    try {
      await utimes(this.pathOf(name), now, now);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    const file = this.pathOf(name);
    try {
      const st = await stat(file, { bigint: true });
      if (!st.isFile()) return undefined;
      const sidecar = (await readSidecar(sidecarPath(file, st.ino))) ?? (await readSidecar(file + META_SUFFIX)) ?? DEFAULT_SIDECAR;
      return { size: Number(st.size), contentType: sidecar.contentType, metadata: sidecar.metadata, created: st.mtime };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async read(name: string, range?: ByteRange): Promise<Readable> {
    // Opened first so that a missing object rejects here rather than as a stream error.
    try {
      return await openFileRange(this.pathOf(name), range);
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFound(name);
      throw err;
    }
  }

  async createIfAbsent(name: string, body: Readable, options: WriteOptions = {}): Promise<boolean> {
    const file = this.pathOf(name);
    const tmp = await this.writeTemp(body);
    return this.publish(tmp, file, options);
  }

  async moveIfAbsent(from: string, to: string, options: WriteOptions = {}): Promise<boolean> {
    const source = this.pathOf(from);
    const target = this.pathOf(to);
    // Linking a file onto itself would "lose" the race and then unlink the object.
    if (source === target) throw new Error(`cannot move ${JSON.stringify(from)} onto itself`);
    let ino: bigint;
    try {
      ino = (await stat(source, { bigint: true })).ino;
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFound(from);
      throw err;
    }
    const sourceSidecar = sidecarPath(source, ino);
    const published = await this.publish(source, target, options.contentType || options.metadata ? options : ((await readSidecar(sourceSidecar)) ?? DEFAULT_SIDECAR));
    await rm(sourceSidecar, { force: true });
    return published;
  }

  async delete(name: string): Promise<void> {
    const file = this.pathOf(name);
    let ino: bigint;
    try {
      ino = (await stat(file, { bigint: true })).ino;
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    await rm(file, { force: true });
    await rm(sidecarPath(file, ino), { force: true });
    await rm(file + META_SUFFIX, { force: true });
  }

  /**
   * Deletes temp files that a crashed process left in the temp directory (its owner is
   * gone) or that nobody has written to for `maxAgeMs`; a live writer's are kept, also
   * another process's sharing this directory.
   */
  async removeAbandonedTemps(maxAgeMs: number, options: { dryRun?: boolean } = {}): Promise<LeftoverSweep> {
    return removeAbandoned(path.join(this.root, TMP_DIR), '', maxAgeMs, options);
  }

  async *list(prefix: string): AsyncIterable<{ name: string; info: ObjectInfo }> {
    // Walk only the directory the prefix points into, then filter by the full prefix.
    const dir = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    for await (const name of walk(this.root, dir)) {
      if (!name.startsWith(prefix) || name.endsWith(META_SUFFIX)) continue;
      const info = await this.stat(name);
      if (info) yield { name, info };
    }
  }

  /** Streams `body` into a fresh temp file and fsyncs it. */
  private async writeTemp(body: Readable): Promise<string> {
    const tmpDir = path.join(this.root, TMP_DIR);
    await makeDirectory(tmpDir);
    const tmp = path.join(tmpDir, tempName());
    try {
      const handle = await open(tmp, 'wx');
      try {
        await pipeline(body, new BatchedFileWriter(handle));
        await handle.sync();
      } finally {
        await handle.close();
      }
      return tmp;
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** Links `tmp` to `file` if `file` is absent, then removes `tmp` either way. */
  private async publish(tmp: string, file: string, options: WriteOptions): Promise<boolean> {
    await makeDirectory(path.dirname(file));
    // Keyed by tmp's inode, which `file` will share once linked: a loser's sidecar has
    // another name, so writing it first cannot clobber the existing object's.
    const sidecar = sidecarPath(file, (await stat(tmp, { bigint: true })).ino);
    try {
      await this.writeSidecar(sidecar, { contentType: options.contentType ?? 'application/octet-stream', metadata: options.metadata ?? {} });
      await link(tmp, file);
      return true;
    } catch (err) {
      await rm(sidecar, { force: true });
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  /**
   * The sidecar is small and rewritten whole, so a temp-and-rename keeps it atomic. The
   * temp lives in the temp directory, where listing never sees it.
   */
  private async writeSidecar(target: string, sidecar: Sidecar): Promise<void> {
    const tmpDir = path.join(this.root, TMP_DIR);
    await makeDirectory(tmpDir);
    const tmp = path.join(tmpDir, `${tempName()}${META_SUFFIX}`);
    try {
      const handle = await open(tmp, 'wx');
      try {
        await handle.writeFile(JSON.stringify(sidecar));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

/**
 * `mkdir -p`, written out because Node's `mkdir(…, { recursive: true })` never returns
 * for a path under /proc (ENOENT for a parent that exists: it retries forever at full
 * CPU on the thread pool). Here each level is tried at most twice, so any error ends it.
 */
export async function makeDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(dir)).isDirectory()) return;
    const parent = path.dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw err;
    await makeDirectory(parent);
  }
  try {
    await mkdir(dir);
  } catch (err) {
    // A concurrent writer made it in between.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !(await stat(dir)).isDirectory()) throw err;
  }
}

function sidecarPath(file: string, ino: bigint): string {
  return `${file}.${ino}${META_SUFFIX}`;
}

const DEFAULT_SIDECAR: Sidecar = { contentType: 'application/octet-stream', metadata: {} };

/** Undefined when there is none (or it is unreadable). */
async function readSidecar(sidecar: string): Promise<Sidecar | undefined> {
  try {
    return JSON.parse(await readFile(sidecar, 'utf8')) as Sidecar;
  } catch {
    return undefined;
  }
}

async function* walk(root: string, dir: string): AsyncIterable<string> {
  let entries;
  try {
    entries = await readdir(path.join(root, dir), { withFileTypes: true });
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (dir === '' && entry.name === TMP_DIR) continue;
    const rel = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) yield* walk(root, rel);
    else if (entry.isFile()) yield rel;
  }
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
