import { tmpdir } from 'node:os';
import { removeAbandoned, type LeftoverSweep } from '../util/leftovers.js';

// Apart from flatten.ts so that gc (loaded at start) sweeps spools without loading flatten.

/** The name prefix of flatten's spool directories in the temp directory. */
export const SPOOL_PREFIX = 'kontain-flatten-';

/**
 * Deletes spool directories that crashed processes left in `dir` (default the temp
 * directory): those whose process is gone, and any untouched for `maxAgeMs`.
 */
export function removeAbandonedSpools(maxAgeMs: number, options: { dir?: string; dryRun?: boolean } = {}): Promise<LeftoverSweep> {
  return removeAbandoned(options.dir ?? tmpdir(), SPOOL_PREFIX, maxAgeMs, options);
}
