/**
 * Reading a static tree without leaving it. The root is the operator's, but what lies
 * under it may come from anywhere (copied trees, unpacked archives): a symlink may lead to
 * /etc, a manifest.json may be a FIFO (an open() that never returns would hold one of
 * libuv's four threads for good) or grow while it is read. Symlinks that stay inside the
 * root are followed (`latest -> 1.0`); anything whose real path is outside is refused.
 */
import { close, constants, fstat, open, read, type Stats } from 'node:fs';
import { readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const openFd = promisify(open);
const fstatFd = promisify(fstat);
const readFd = promisify(read);
const closeFd = promisify(close);

/** Something in the tree that cannot be served as it is; the message names it relative to the root. */
export class TreeProblem extends Error {
  override readonly name = 'TreeProblem';
}

/** O_NONBLOCK: opening a FIFO or a device returns at once (and is then refused as not a regular file). */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

export class ConfinedRoot {
  private real?: Promise<string>;

  constructor(readonly root: string) {}

  /** The root's real path, resolved once (the root itself may be a symlink). */
  realRoot(): Promise<string> {
    this.real ??= realpath(this.root).catch((err: unknown) => {
      this.real = undefined;
      throw err;
    });
    return this.real;
  }

  /** `file` relative to the root, for messages (never an absolute path of the machine). */
  relative(file: string): string {
    return path.relative(this.root, file).split(path.sep).join('/') || '.';
  }

  /** True when `real` (a real path) is the root or below it. */
  async contains(real: string): Promise<boolean> {
    const root = await this.realRoot();
    return real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
  }

  /** The real path of a directory or file under the root; TreeProblem when it leads outside. */
  async resolve(file: string): Promise<string> {
    const real = await realpath(file);
    if (!(await this.contains(real))) throw new TreeProblem(`${this.relative(file)} leads out of the static root (a symlink); it is not served`);
    return real;
  }

  /**
   * Opens a regular file under the root. Where the open file lies is read back from the
   * descriptor (/proc/self/fd), so a symlink swapped between a check and the open cannot
   * lead outside; without /proc, the path is resolved first. Rejects with ENOENT as it is,
   * and with TreeProblem for a file outside the root or one that is not a regular file.
   */
  async openFile(file: string): Promise<{ fd: number; stats: Stats; real: string }> {
    // A plain descriptor, not a FileHandle: blobs are served from it by FileRangeStream.
    const fd = await openFd(file, OPEN_FLAGS);
    try {
      const stats = await fstatFd(fd);
      const real = await readlink(`/proc/self/fd/${fd}`).catch(() => realpath(file));
      if (!(await this.contains(real))) throw new TreeProblem(`${this.relative(file)} leads out of the static root (a symlink); it is not served`);
      if (!stats.isFile()) throw new TreeProblem(`${this.relative(file)} is not a regular file`);
      return { fd, stats, real };
    } catch (err) {
      await closeFd(fd);
      throw err;
    }
  }

  /**
   * A small file's bytes, at most `max`: read into a buffer one byte longer than the file
   * was, so a file that grows while it is read is refused rather than read on. TreeProblem
   * when it is larger.
   */
  async readSmallFile(file: string, max: number): Promise<{ bytes: Buffer; stats: Stats; real: string }> {
    const { fd, stats, real } = await this.openFile(file);
    try {
      if (stats.size > max) throw new TreeProblem(`${this.relative(file)} is ${stats.size} bytes, over the ${max} byte limit for manifests and indexes; it is not read`);
      const buffer = Buffer.alloc(stats.size + 1);
      let length = 0;
      for (;;) {
        if (length === buffer.length) throw new TreeProblem(`${this.relative(file)} grew while it was read`);
        const { bytesRead } = await readFd(fd, buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      return { bytes: buffer.subarray(0, length), stats, real };
    } finally {
      await closeFd(fd);
    }
  }
}
