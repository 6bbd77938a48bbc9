import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';

/** Bytes allocated on disk under `dir` (files that vanish while it looks are skipped). */
export async function diskUsage(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await diskUsage(full);
    else {
      try {
        total += (await lstat(full)).blocks * 512;
      } catch {
        // removed meanwhile
      }
    }
  }
  return total;
}

/**
 * Samples `diskUsage` of `dirs` until `until` settles; returns the largest total seen
 * (a lower bound of the true peak, which is what an upper-bound assertion needs).
 */
export async function peakDiskUsage(dirs: string[], until: Promise<unknown>): Promise<number> {
  let done = false;
  void until.finally(() => (done = true)).catch(() => undefined);
  let peak = 0;
  while (!done) {
    let total = 0;
    for (const dir of dirs) total += await diskUsage(dir);
    peak = Math.max(peak, total);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return peak;
}
