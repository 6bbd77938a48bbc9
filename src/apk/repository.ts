/**
 * APKINDEXes by repository and architecture, verified against a keyring. Verified
 * indexes are kept in memory for a short while (INDEX_TTL_MS, one minute): long enough
 * that a burst of pulls and a repeat pull cost no index fetch, short enough that a
 * repository update shows within a minute.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { ApkFetcher, Trust } from './fetch.js';
import { readApkIndexArchive } from './index-archive.js';
import { sourceURL } from './keyring.js';
import type { ApkPublicKey } from './signature.js';
import type { ApkPackage } from './types.js';

export const INDEX_TTL_MS = 60_000;
/** Wolfi's index is ~20 MB compressed; leave room. */
const MAX_INDEX_BYTES = 256 * 1024 * 1024;

/** `@tag url` lines of apko configurations: the tag is dropped (pins are not supported). */
export function repositoryBase(line: string): string {
  const parts = line.trim().split(/\s+/);
  const url = parts[0]?.startsWith('@') ? parts[1] ?? '' : parts[0] ?? '';
  return sourceURL(url).replace(/\/+$/, '');
}

export class ApkIndexCache {
  // Bounded by an estimate of memory (about 1 kB per parsed record), since requests can
  // name repositories of their own.
  private readonly cache = new LRUCache<string, ApkPackage[]>({
    maxSize: 256 * 1024 * 1024,
    sizeCalculation: (packages) => packages.length * 1024 + 1,
    ttl: INDEX_TTL_MS,
  });

  constructor(private readonly fetcher: ApkFetcher) {}

  /** The packages of `<repository>/<arch>/APKINDEX.tar.gz`, each record naming `repository`. */
  async packages(repository: string, arch: string, keyring: readonly ApkPublicKey[], trust: Trust): Promise<ApkPackage[]> {
    const keys = createHash('sha256')
      .update(keyring.map((k) => `${k.name}\0${k.pem}`).sort().join('\0'))
      .digest('hex');
    const cacheKey = `${trust}\0${repository}\0${arch}\0${keys}`;
    const hit = this.cache.get(cacheKey);
    if (hit) return hit;
    const url = `${repository}/${arch}/APKINDEX.tar.gz`;
    const bytes = await this.fetcher.bytes({ url, trust, maxBytes: MAX_INDEX_BYTES, what: `APKINDEX ${url}` });
    const { packages } = readApkIndexArchive(bytes, keyring, repository, url);
    this.cache.set(cacheKey, packages);
    return packages;
  }
}
