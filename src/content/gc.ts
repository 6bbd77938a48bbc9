import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { readObject, type ObjectInfo } from '../storage/backend.js';
import { isSha256Digest } from '../oci/digest.js';
import { ContentStore } from './store.js';
import { removeAbandonedSpools } from '../oci/flatten-spools.js';
import { RepositoryLinks } from './links.js';
import { BuildRecords, buildObjectExpired } from './build-records.js';
import { StoreLeases } from './lease.js';

/**
 * Garbage collection of a content store: by reachability, not by age alone.
 *
 * 1. Pointers (cache keys) older than the TTL are deleted; the rest are roots.
 * 2. Manifests younger than the grace period are roots too: an image made a moment ago
 *    may be being pulled (by digest) without any pointer.
 * 3. Mark: everything reachable from the roots is live (index → child manifests,
 *    manifest → config and layers, `subject` → the manifest it refers to). Children
 *    that are not in the store (mirror fetches them on demand) are skipped.
 * 4. Sweep: manifests, then blobs, that are neither live nor younger than the grace
 *    period are deleted, and so are `tmp/` uploads older than the grace period.
 * 5. Crash leftovers outside the object names (the fs backend's temp files, flatten
 *    spools) whose process is gone or that are older than the grace period.
 * 6. Repository links (links.ts) older than the grace period whose content is gone are
 *    deleted; links never keep content alive.
 * 7. Build records (`builds/`, build-records.ts) after their lifetimes: failures after
 *    the failure TTL, attempt records a grace period after their lease ran out, logs,
 *    progress, commit sources and Cloud Build folders after the pointer TTL (at least the
 *    grace); and leases (`leases/`, lease.ts) a grace period after their last renewal,
 *    which only a holder that died leaves behind.
 *
 * What protects what:
 * - An image with a live pointer is reachable, however old its objects are.
 * - An image made by a host that writes no pointer (`random`: new on every tag request,
 *   pulled by digest seconds later) is protected by the grace period alone. The grace
 *   must therefore exceed the longest time between making an image and the end of its
 *   pull. The default hour is generous; a few seconds is not safe.
 * - Objects written while a run is under way are younger than its start, so no run ever
 *   deletes them, even with a grace of 0.
 * - A build that reuses an object already in the store (a deterministic rebuild of an
 *   expired key) touches it: the store's writers give an object they find in place a new
 *   creation time. The pointer list is read again before each sweep, so a pointer written
 *   during the run protects the old objects it reaches; and each old object is stat'ed
 *   again just before it is deleted, so one touched after the run listed it is kept even
 *   when its pointer comes after the last re-read. What remains is the moment between
 *   that stat and the delete itself. Objects served without being written again (mirror
 *   blobs) are not touched; the mirror fetches a blob again if it is gone.
 *
 * Only `pointers/`, `manifests/sha256/`, `blobs/sha256/`, `links/`, `tmp/`, `builds/` and
 * `leases/` are looked at: objects under any other prefix (the task queue's) are never touched. Listings
 * are streamed; the only thing held in memory is the set of live digests.
 *
 * Several instances may run it at once (Cloud Run): deletes are idempotent and each run
 * only deletes what it found unreachable and old.
 */

const POINTERS = 'pointers/';
const MANIFESTS = 'manifests/sha256/';
const BLOBS = 'blobs/sha256/';
const TMP = 'tmp/';
const HEX = /^[0-9a-f]{64}$/;
/** Deletes in flight at once: GCS deletes are one request each. */
const DELETE_CONCURRENCY = 16;

export const DEFAULT_GC_GRACE_MS = 3600 * 1000;

export interface GcOptions {
  /** The time the run treats as now (tests pass a later one to age the store); default the clock. */
  now?: Date | number;
  /** Pointer lifetime; default the store's. */
  ttlMs?: number;
  /** Unreachable objects younger than this are kept; default one hour. */
  graceMs?: number;
  log?: Logger;
  /** Report what would be deleted, delete nothing. */
  dryRun?: boolean;
  /** Stops the run between objects (server shutdown); the run then rejects. */
  signal?: AbortSignal;
  /** KONTAIN_LEASE_TTL: leases and build attempts not renewed for this (plus the grace) are gone. Default 30 s. */
  leaseTtlMs?: number;
  /** KONTAIN_BUILD_FAILURE_TTL: how long a failed build is remembered. Default 600 s. */
  buildFailureTtlMs?: number;
}

export interface GcReport {
  startedAt: string;
  durationMs: number;
  dryRun: boolean;
  pointersLive: number;
  pointersExpired: number;
  manifestsKept: number;
  manifestsDeleted: number;
  blobsKept: number;
  blobsDeleted: number;
  tmpKept: number;
  tmpDeleted: number;
  /** Crash leftovers outside the object namespace: the fs store's temp files, flatten spools. */
  leftoversDeleted: number;
  /** Repository links whose content is gone. */
  linksDeleted: number;
  /** Build records, logs and sources past their lifetime (builds/). */
  buildObjectsDeleted: number;
  /** Leases left by holders that died (leases/). */
  leasesDeleted: number;
  /**
   * Objects kept only because they are younger than the grace period: manifests no live
   * pointer reaches (what they reach is then kept as live), and unreachable blobs.
   */
  keptByGrace: number;
  /**
   * Old unreachable objects found touched just before deletion: a build reused them after
   * the run had listed them (they are counted as kept, not deleted).
   */
  keptAsReused: number;
  /** Manifests reachable from a root but absent from the store (fetched on demand, or gone). */
  manifestsMissing: number;
  /** Bytes of the manifests, blobs and tmp objects deleted. */
  bytesFreed: number;
}

export async function collectGarbage(store: ContentStore, options: GcOptions = {}): Promise<GcReport> {
  const started = Date.now();
  const now = options.now === undefined ? started : new Date(options.now).getTime();
  const ttlMs = options.ttlMs ?? store.pointerTTLms;
  const graceMs = options.graceMs ?? DEFAULT_GC_GRACE_MS;
  const { log, signal } = options;
  const dryRun = options.dryRun ?? false;
  const report: GcReport = {
    startedAt: new Date(now).toISOString(),
    durationMs: 0,
    dryRun,
    pointersLive: 0,
    pointersExpired: 0,
    manifestsKept: 0,
    manifestsDeleted: 0,
    blobsKept: 0,
    blobsDeleted: 0,
    tmpKept: 0,
    tmpDeleted: 0,
    leftoversDeleted: 0,
    linksDeleted: 0,
    buildObjectsDeleted: 0,
    leasesDeleted: 0,
    keptByGrace: 0,
    keptAsReused: 0,
    manifestsMissing: 0,
    bytesFreed: 0,
  };
  const young = (info: ObjectInfo) => now - info.created.getTime() < graceMs;
  /**
   * Deletes an object the sweep found old and unreachable, unless it has been touched since
   * it was listed: a rebuild that found it in place (store writers touch what already
   * exists) is about to point at it, and its pointer may come after our last look.
   */
  const deleteUnlessReused = async (name: string, listed: ObjectInfo, remove: () => Promise<void>, kind: 'manifests' | 'blobs') => {
    const current = await store.backend.stat(name);
    if (current && current.created.getTime() > listed.created.getTime()) {
      report[kind === 'manifests' ? 'manifestsDeleted' : 'blobsDeleted']--;
      report[kind === 'manifests' ? 'manifestsKept' : 'blobsKept']++;
      report.bytesFreed -= listed.size;
      report.keptAsReused++;
      return;
    }
    await remove();
  };
  const marker = new Marker(store, log, signal);
  const deleter = new Deleter(dryRun);
  /** Digests of the manifests and blobs the sweeps keep: the links to them stay. */
  const kept = new Set<string>();

  // 1. Expire pointers; mark what the live ones reach.
  for await (const { name, info } of store.list(POINTERS)) {
    signal?.throwIfAborted();
    const pointer = await readPointer(store, name, info);
    if (!pointer) continue; // replaced or deleted since listed
    if (now - pointer.created > ttlMs) {
      report.pointersExpired++;
      await deleter.add(async () => {
        // setPointer replaces a pointer in place: delete only if it is still the expired one.
        const current = await readPointer(store, name);
        if (current && now - current.created > ttlMs) await store.backend.delete(name);
      });
      continue;
    }
    report.pointersLive++;
    if (pointer.digest) await marker.markManifest(pointer.digest);
  }
  await deleter.drain();

  // 2. Young manifests are roots: they may be being served with no pointer at all.
  for await (const { name, info } of store.list(MANIFESTS)) {
    signal?.throwIfAborted();
    const digest = digestOf(name, MANIFESTS);
    if (!digest || !young(info)) continue;
    if (!marker.live.has(digest)) report.keptByGrace++;
    await marker.markManifest(digest);
  }

  // 3. Pointers written meanwhile may reach old objects (a rebuild that reused them).
  await marker.rescanPointers(now, ttlMs);

  // 4. Sweep manifests before blobs, so a manifest is never left without its blobs.
  for await (const { name, info } of store.list(MANIFESTS)) {
    signal?.throwIfAborted();
    const digest = digestOf(name, MANIFESTS);
    if (!digest) continue;
    if (marker.live.has(digest)) {
      report.manifestsKept++;
      kept.add(digest);
    } else if (young(info)) {
      // Written after step 2 listed it: keep it and what it reaches.
      await marker.markManifest(digest);
      report.manifestsKept++;
      report.keptByGrace++;
      kept.add(digest);
    } else {
      report.manifestsDeleted++;
      report.bytesFreed += info.size;
      await deleter.add(() => deleteUnlessReused(name, info, () => store.deleteManifest(digest), 'manifests'));
    }
  }
  await deleter.drain();

  // 5. Blobs, after one more look for pointers written during the manifest sweep.
  await marker.rescanPointers(now, ttlMs);
  for await (const { name, info } of store.list(BLOBS)) {
    signal?.throwIfAborted();
    const digest = digestOf(name, BLOBS);
    if (!digest) continue;
    if (marker.live.has(digest)) {
      report.blobsKept++;
      kept.add(digest);
    } else if (young(info)) {
      report.blobsKept++;
      report.keptByGrace++;
      kept.add(digest);
    } else {
      report.blobsDeleted++;
      report.bytesFreed += info.size;
      await deleter.add(() => deleteUnlessReused(name, info, () => store.backend.delete(name), 'blobs'));
    }
  }
  await deleter.drain();

  // 6. Uploads that never got their digest name (a crash mid-write).
  for await (const { name, info } of store.list(TMP)) {
    signal?.throwIfAborted();
    if (young(info)) {
      report.tmpKept++;
      continue;
    }
    report.tmpDeleted++;
    report.bytesFreed += info.size;
    await deleter.add(() => store.backend.delete(name));
  }
  await deleter.drain();

  // 7. What crashed processes left outside the store's names.
  const leftovers = await removeCrashLeftovers(store, graceMs, { dryRun });
  report.leftoversDeleted = leftovers.removed;
  report.bytesFreed += leftovers.bytes;
  // 8. Links to content that is gone (an old link's blob may come back: mirror links a
  // manifest's layers before fetching them, and asks upstream again without the link).
  for await (const { name, info } of store.list(RepositoryLinks.PREFIX)) {
    signal?.throwIfAborted();
    const digest = RepositoryLinks.digestOf(name);
    if (!digest || young(info) || kept.has(digest) || marker.live.has(digest)) continue;
    report.linksDeleted++;
    await deleter.add(() => store.backend.delete(name));
  }
  await deleter.drain();

  // 9. Build records and leases past their lifetimes. An object renewed since it was
  // listed (a live attempt's or lease's heartbeat) is kept.
  const leaseTtlMs = options.leaseTtlMs ?? 30_000;
  const lifetimes = { leaseTtlMs, failureTtlMs: options.buildFailureTtlMs ?? 600_000, keepMs: Math.max(ttlMs, graceMs), graceMs };
  const deleteUnlessRenewed = async (name: string, listed: ObjectInfo) => {
    const current = await store.backend.stat(name);
    if (current && current.created.getTime() === listed.created.getTime()) await store.backend.delete(name);
  };
  for await (const { name, info } of store.list(BuildRecords.PREFIX)) {
    signal?.throwIfAborted();
    if (!(await buildObjectExpired(store.backend, name, info, now, lifetimes))) continue;
    report.buildObjectsDeleted++;
    await deleter.add(() => deleteUnlessRenewed(name, info));
  }
  await deleter.drain();
  for await (const { name, info } of store.list(StoreLeases.PREFIX)) {
    signal?.throwIfAborted();
    if (now - info.created.getTime() <= leaseTtlMs + graceMs) continue;
    report.leasesDeleted++;
    await deleter.add(() => deleteUnlessRenewed(name, info));
  }
  await deleter.drain();

  report.manifestsMissing = marker.missing;
  report.durationMs = Date.now() - started;
  return report;
}

/** Leftovers whose owner cannot be checked are kept at least this long after their last write. */
const LEFTOVER_MIN_AGE_MS = 15 * 60 * 1000;

/**
 * Removes temp files and flatten spools left by processes that died mid-write (their
 * owner is gone from this host), and any untouched for the grace period (at least 15 minutes): files a live process
 * is writing, this one's or another's sharing the store, are kept. Run at start and by gc.
 */
export async function removeCrashLeftovers(store: ContentStore, graceMs: number, options: { dryRun?: boolean } = {}): Promise<{ removed: number; bytes: number }> {
  // A short grace must not take a slow but live write of another machine sharing the store.
  const maxAgeMs = Math.max(graceMs, LEFTOVER_MIN_AGE_MS);
  const temps = (await store.backend.removeAbandonedTemps?.(maxAgeMs, options)) ?? { removed: 0, bytes: 0 };
  const spools = await removeAbandonedSpools(maxAgeMs, options);
  return { removed: temps.removed + spools.removed, bytes: temps.bytes + spools.bytes };
}

/** The lifetimes of build records and leases as configured. */
export function buildLifetimes(config: Pick<Config, 'leaseTTLSeconds' | 'builds'>): Pick<GcOptions, 'leaseTtlMs' | 'buildFailureTtlMs'> {
  return { leaseTtlMs: config.leaseTTLSeconds * 1000, buildFailureTtlMs: config.builds.failureTtlSeconds * 1000 };
}

export interface PeriodicGcOptions extends Omit<GcOptions, 'signal' | 'now' | 'dryRun'> {
  /** Time between runs; 0 or less disables them. The first run comes one interval after start. */
  intervalMs: number;
  log: Logger;
}

export interface PeriodicGc {
  /** Stops the timer and any run under way; resolves when that run has ended. */
  stop(): Promise<void>;
}

/**
 * Runs collectGarbage every interval inside the server. One run at a time: a run still
 * going when the next is due makes that one skip. The timer is unref'd so it never keeps
 * the process alive.
 */
export function startPeriodicGc(store: ContentStore, options: PeriodicGcOptions): PeriodicGc {
  if (!(options.intervalMs > 0)) return { stop: async () => undefined };
  const { intervalMs, log, ...gcOptions } = options;
  const abort = new AbortController();
  let running: Promise<void> | undefined;
  const run = () => {
    if (running) {
      log.warn('garbage collection skipped: the previous run is still going');
      return;
    }
    running = collectGarbage(store, { ...gcOptions, log, signal: abort.signal })
      .then(
        (report) => log.info({ gc: report }, `garbage collection: ${report.manifestsDeleted} manifests, ${report.blobsDeleted} blobs, ${report.pointersExpired} pointers deleted`),
        (err: unknown) => {
          if (abort.signal.aborted) log.info('garbage collection stopped by shutdown');
          else log.error({ err }, 'garbage collection failed');
        },
      )
      .finally(() => (running = undefined));
  };
  const timer = setInterval(run, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      abort.abort();
      await running;
    },
  };
}

interface ParsedPointer {
  digest?: string;
  created: number;
}

/**
 * A pointer's manifest digest and creation time, or undefined when it is gone. A pointer
 * that cannot be parsed has no digest and dates from its object's creation, so it still
 * expires.
 */
async function readPointer(store: ContentStore, name: string, info?: ObjectInfo): Promise<ParsedPointer | undefined> {
  const bytes = await readObject(store.backend, name);
  if (!bytes) return undefined;
  const text = bytes.toString('utf8');
  let parsed: { descriptor?: { digest?: unknown }; created?: unknown } | undefined;
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  const digest = parsed?.descriptor?.digest;
  const created = typeof parsed?.created === 'string' ? Date.parse(parsed.created) : NaN;
  const fallback = (info ?? (await store.backend.stat(name)))?.created.getTime() ?? 0;
  return {
    digest: typeof digest === 'string' && isSha256Digest(digest) ? digest : undefined,
    created: Number.isNaN(created) ? fallback : created,
  };
}

/** The digest an object name under `prefix` stands for, or undefined for foreign names. */
function digestOf(name: string, prefix: string): string | undefined {
  const hex = name.slice(prefix.length);
  return HEX.test(hex) ? `sha256:${hex}` : undefined;
}

/** The live set, and the walk that fills it. */
class Marker {
  /** Digests of live manifests and blobs (one set: a digest names the same bytes either way). */
  readonly live = new Set<string>();
  private readonly expanded = new Set<string>();
  missing = 0;

  constructor(
    private readonly store: ContentStore,
    private readonly log: Logger | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /**
   * Marks a manifest and everything it reaches. A read error propagates: a run that
   * cannot see everything live must not sweep.
   */
  async markManifest(root: string): Promise<void> {
    const stack = [root];
    while (stack.length > 0) {
      this.signal?.throwIfAborted();
      const digest = stack.pop()!;
      if (this.expanded.has(digest)) continue;
      this.expanded.add(digest);
      this.live.add(digest);
      const manifest = await this.store.getManifest(digest);
      if (!manifest) {
        this.missing++;
        continue;
      }
      let refs: References;
      try {
        refs = references(manifest.bytes);
      } catch (err) {
        this.log?.warn({ digest, err }, 'garbage collection: manifest is not JSON; nothing it names is marked');
        continue;
      }
      for (const blob of refs.blobs) this.live.add(blob);
      stack.push(...refs.manifests);
    }
  }

  /** Marks what pointers reach that were not live at the first pass. */
  async rescanPointers(now: number, ttlMs: number): Promise<void> {
    for await (const { name, info } of this.store.list(POINTERS)) {
      this.signal?.throwIfAborted();
      const pointer = await readPointer(this.store, name, info);
      if (pointer?.digest && now - pointer.created <= ttlMs && !this.expanded.has(pointer.digest)) {
        await this.markManifest(pointer.digest);
      }
    }
  }
}

interface References {
  manifests: string[];
  blobs: string[];
}

interface DescriptorLike {
  digest?: unknown;
}

/** What a manifest or index names: child manifests and subject; config, layers and blobs. */
function references(bytes: Buffer): References {
  const doc = JSON.parse(bytes.toString('utf8')) as {
    manifests?: DescriptorLike[];
    subject?: DescriptorLike;
    config?: DescriptorLike;
    layers?: DescriptorLike[];
    /** The short-lived OCI artifact manifest. */
    blobs?: DescriptorLike[];
    /** Docker schema 1. */
    fsLayers?: Array<{ blobSum?: unknown }>;
  } | null;
  const digests = (list: unknown): string[] =>
    (Array.isArray(list) ? list : [])
      .map((d: DescriptorLike | null) => d?.digest)
      .filter((d): d is string => typeof d === 'string' && isSha256Digest(d));
  return {
    manifests: [...digests(doc?.manifests), ...digests([doc?.subject])],
    blobs: [
      ...digests([doc?.config]),
      ...digests(doc?.layers),
      ...digests(doc?.blobs),
      ...digests((Array.isArray(doc?.fsLayers) ? doc!.fsLayers : []).map((l) => ({ digest: l?.blobSum }))),
    ],
  };
}

/** Deletes with bounded concurrency; a failure rejects the next add or drain (and so the run). */
class Deleter {
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly dryRun: boolean) {}

  /** Starts a delete once fewer than DELETE_CONCURRENCY are in flight. */
  async add(remove: () => Promise<void>): Promise<void> {
    if (this.dryRun) return;
    while (this.inFlight.size >= DELETE_CONCURRENCY) await Promise.race(this.inFlight);
    this.check();
    const p: Promise<void> = remove()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  async drain(): Promise<void> {
    await Promise.all(this.inFlight);
    this.check();
  }

  private check(): void {
    if (this.failure) throw this.failure.error;
  }
}
