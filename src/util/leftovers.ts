/**
 * Temporary files and directories that name the process that made them, so that what a
 * crashed process left behind can be told from what a live one is still writing, even
 * when several processes (or machines, over a shared volume) use the same directory.
 *
 * A name is `<prefix><host>.<pid>.<anything>`. An entry is abandoned when it was made on
 * this host by a process that no longer exists, or, whoever made it (another host, or a
 * name from before owners were recorded), when nothing in it has changed for `maxAgeMs`.
 */
import { hostname } from 'node:os';
import path from 'node:path';
import { lstat, readdir, rm } from 'node:fs/promises';

const HOST = hostname().replace(/[^A-Za-z0-9-]/g, '_') || 'host';

/** `<prefix><host>.<pid>.`: start a temp name with it to record its owner. */
export function ownedPrefix(prefix: string): string {
  return `${prefix}${HOST}.${process.pid}.`;
}

function processExists(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Whether `name` (starting with `prefix`) was made on this host by a process that is gone. */
function ownerIsGone(name: string, prefix: string): boolean {
  const owner = /^([A-Za-z0-9_-]+)\.(\d+)\./.exec(name.slice(prefix.length));
  return owner !== null && owner[1] === HOST && !processExists(Number(owner[2]));
}

/** The newest modification time of a file, or of a directory and its direct entries. */
async function lastChange(file: string): Promise<number> {
  const info = await lstat(file);
  let newest = info.mtimeMs;
  if (info.isDirectory()) {
    for (const entry of await readdir(file)) {
      const child = await lstat(path.join(file, entry)).catch(() => undefined);
      if (child) newest = Math.max(newest, child.mtimeMs);
    }
  }
  return newest;
}

export interface LeftoverSweep {
  /** Entries removed (or, on a dry run, that would be). */
  removed: number;
  bytes: number;
}

/**
 * Removes the abandoned entries of `dir` whose names start with `prefix` (nothing else is
 * looked at). With `dryRun` only counts them. A missing directory has none.
 */
export async function removeAbandoned(dir: string, prefix: string, maxAgeMs: number, options: { dryRun?: boolean; now?: number } = {}): Promise<LeftoverSweep> {
  const now = options.now ?? Date.now();
  const sweep: LeftoverSweep = { removed: 0, bytes: 0 };
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return sweep;
    throw err;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const file = path.join(dir, name);
    try {
      if (!ownerIsGone(name, prefix) && now - (await lastChange(file)) < maxAgeMs) continue;
      sweep.bytes += await sizeOf(file);
      if (!options.dryRun) await rm(file, { recursive: true, force: true });
      sweep.removed++;
    } catch (err) {
      // Removed by its owner (or another sweep) meanwhile.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return sweep;
}

async function sizeOf(file: string): Promise<number> {
  const info = await lstat(file);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(file)) total += await sizeOf(path.join(file, entry)).catch(() => 0);
  return total;
}
