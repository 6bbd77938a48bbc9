/**
 * Blob files of a static tree, served only as what they are. A file's size is checked
 * against its descriptor before anything is sent; its bytes are hashed while the first
 * whole read streams, and the final chunk is held until the digest checks out, so a file
 * that does not match never arrives as a complete answer (the connection is cut). The
 * verdict is kept per file version (inode, size, times), so later reads and ranges are
 * not hashed again; a range of a file never read whole is hashed whole first.
 */
import { createHash } from 'node:crypto';
import { close, type Stats } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { FileRangeStream } from '../storage/file-range-stream.js';
import { SingleFlight } from '../util/single-flight.js';
import { TreeProblem, type ConfinedRoot } from './confined.js';
import type { BlobLocation } from './repository.js';

/** A blob file that passed the checks that need no reading. */
export interface BlobFile {
  /** Its real path, inside the root. */
  path: string;
  size: number;
  /** The file version the verdicts are kept under. */
  version: string;
}

const versionOf = (s: Stats, digest: string) => `${digest}\0${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
const closeQuietly = (fd: number) => close(fd, () => undefined);

export class BlobFiles {
  /** File version → whether its bytes hash to the digest. */
  private readonly verdicts = new LRUCache<string, boolean>({ max: 100_000 });
  private readonly hashing = new SingleFlight<boolean>();

  constructor(private readonly root: ConfinedRoot) {}

  private mismatch(file: string, digest: string): TreeProblem {
    return new TreeProblem(`${this.root.relative(file)} does not hash to ${digest}; it is not served`);
  }

  /**
   * The first of a blob's files that is a regular file inside the root, of the size its
   * descriptor states, not already found not to match. Undefined when none exists;
   * TreeProblem (the first problem met) when some exist but none can be served.
   */
  async find(digest: string, locations: readonly BlobLocation[]): Promise<BlobFile | undefined> {
    let problem: TreeProblem | undefined;
    for (const location of locations) {
      let opened;
      try {
        opened = await this.root.openFile(location.path);
      } catch (err) {
        if (err instanceof TreeProblem) problem ??= err;
        else if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problem ??= new TreeProblem(`${this.root.relative(location.path)} cannot be read (${(err as NodeJS.ErrnoException).code})`);
        continue;
      }
      closeQuietly(opened.fd);
      const { stats, real } = opened;
      if (location.size !== undefined && stats.size !== location.size) {
        problem ??= new TreeProblem(`${this.root.relative(location.path)} is ${stats.size} bytes, but its manifest says ${digest} is ${location.size}; it is not served`);
        continue;
      }
      const version = versionOf(stats, digest);
      if (this.verdicts.get(version) === false) {
        problem ??= this.mismatch(location.path, digest);
        continue;
      }
      return { path: real, size: stats.size, version };
    }
    if (problem) throw problem;
    return undefined;
  }

  /**
   * The file's bytes in `range` (inclusive end) or whole, checked: a whole read is hashed
   * on the way unless this version was verified before; a range is served only from a
   * verified version (hashing the whole file first when needed).
   */
  async open(digest: string, file: BlobFile, range?: { start: number; end: number }): Promise<FileRangeStream> {
    const { fd, stats } = await this.root.openFile(file.path);
    try {
      const version = versionOf(stats, digest);
      if (version !== file.version) throw new TreeProblem(`${this.root.relative(file.path)} changed while it was being served; try again`);
      let verdict = this.verdicts.get(version);
      // A range cannot be checked by itself; an empty file has no last chunk to hold.
      if (verdict === undefined && (range || stats.size === 0)) verdict = await this.verify(digest, file);
      if (verdict === false) throw this.mismatch(file.path, digest);
      if (range) return new FileRangeStream(fd, range.start, Math.min(range.end + 1, stats.size));
      if (verdict) return new FileRangeStream(fd, 0, stats.size);
      const hash = createHash('sha256');
      return new FileRangeStream(fd, 0, stats.size, (chunk, last) => {
        hash.update(chunk);
        if (!last) return;
        const good = `sha256:${hash.digest('hex')}` === digest;
        this.verdicts.set(version, good);
        if (!good) throw this.mismatch(file.path, digest);
      });
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  }

  /** Whether the file's bytes hash to the digest, read whole once per file version. */
  verify(digest: string, file: BlobFile): Promise<boolean> {
    const known = this.verdicts.get(file.version);
    return known !== undefined ? Promise.resolve(known) : this.hashing.run(file.version, () => this.hashWhole(file.path, digest, file.version));
  }

  /** Hashes a whole file version and remembers the verdict. */
  private async hashWhole(file: string, digest: string, version: string): Promise<boolean> {
    const { fd, stats } = await this.root.openFile(file);
    const hash = createHash('sha256');
    for await (const chunk of new FileRangeStream(fd, 0, stats.size) as AsyncIterable<Buffer>) hash.update(chunk);
    if (versionOf(stats, digest) !== version) throw new TreeProblem(`${this.root.relative(file)} changed while it was being served; try again`);
    const good = `sha256:${hash.digest('hex')}` === digest;
    this.verdicts.set(version, good);
    return good;
  }
}
