/**
 * What the store remembers about builds (the slow-work facility, src/builds/facility.ts):
 *
 *   builds/<id>.json       the attempt under way
 *   builds/<id>.failed.json  the failure of the last attempt, while it is remembered
 *   builds/<id>.progress   the step it is at ("step 3/7"), replaced as it moves
 *   builds/<id>.log        the log of the last attempt that finished (bounded)
 *   builds/sources/<key>.json  what a host read from an immutable source (a commit's
 *                          Dockerfile), so a pull of a built commit fetches nothing
 *   builds/cloud/<id>/…    a Cloud Build's source, log and output, while it runs
 *
 * An attempt ends by writing its image's pointer or its failure record first and
 * deleting its attempt record last, so whoever finds no attempt record finds the outcome.
 * Garbage collection deletes each kind after its lifetime (`buildObjectExpired`).
 */
import { Readable } from 'node:stream';
import { readObject, type ObjectInfo, type StorageBackend } from '../storage/backend.js';

export interface BuildRecord {
  state: 'running' | 'failed';
  /** One attempt at the work: tasks carry it, so a stale delivery does nothing. */
  attempt: string;
  /** `owner/repo@abc1234`, for messages. */
  label: string;
  started: string;
  /**
   * When the attempt's first task is due (delayed work such as wait's): nobody renews the
   * record before then, so its lease runs from this time rather than from its writing.
   */
  due?: string;
  finished?: string;
  /** A failure: the error a client is answered with, and the log's last lines. */
  error?: { code: string; status: number; message: string };
  logTail?: string[];
}

const PREFIX = 'builds/';

/** How long each kind of builds/ object is kept (see buildObjectExpired). */
export interface BuildLifetimes {
  /** A running attempt not renewed for this long is lost (KONTAIN_LEASE_TTL). */
  leaseTtlMs: number;
  /** A failure is remembered this long (KONTAIN_BUILD_FAILURE_TTL). */
  failureTtlMs: number;
  /** Logs, progress, sources read from commits and Cloud Build folders (KONTAIN_TTL, at least the gc grace). */
  keepMs: number;
  /** Kept beyond the lease before an attempt record counts as garbage (the gc grace). */
  graceMs: number;
}

/** When a running attempt was last known alive: its last renewal, or its due time if later. */
export function attemptAliveAt(record: BuildRecord, renewed: Date | undefined): number {
  const due = record.due ? Date.parse(record.due) : NaN;
  const last = renewed?.getTime() ?? Date.parse(record.started);
  return Number.isNaN(due) ? last : Math.max(last, due);
}

/**
 * Whether a builds/ object has outlived its use, for garbage collection: failure records
 * after the failure TTL, attempt records whose lease ran out a grace period ago, and
 * logs, progress, sources and Cloud Build folders after `keepMs`.
 */
export async function buildObjectExpired(backend: StorageBackend, name: string, info: ObjectInfo, now: number, lifetimes: BuildLifetimes): Promise<boolean> {
  const age = now - info.created.getTime();
  if (name.endsWith('.failed.json')) return age > lifetimes.failureTtlMs;
  if (/^builds\/[0-9a-f]+\.json$/.test(name)) {
    const bytes = await readObject(backend, name);
    if (!bytes) return false;
    let record: BuildRecord | undefined;
    try {
      record = JSON.parse(bytes.toString('utf8')) as BuildRecord;
    } catch {
      record = undefined;
    }
    const alive = record ? attemptAliveAt(record, info.created) : info.created.getTime();
    return now - alive > lifetimes.leaseTtlMs + lifetimes.graceMs;
  }
  return age > lifetimes.keepMs;
}

export class BuildRecords {
  static readonly PREFIX = PREFIX;

  constructor(private readonly backend: StorageBackend) {}

  async get(id: string): Promise<BuildRecord | undefined> {
    const bytes = await readObject(this.backend, `${PREFIX}${id}.json`);
    if (!bytes) return undefined;
    try {
      return JSON.parse(bytes.toString('utf8')) as BuildRecord;
    } catch {
      return undefined;
    }
  }

  /** When the attempt record was written or last renewed by the instance running it. */
  async renewedAt(id: string): Promise<Date | undefined> {
    return (await this.backend.stat(`${PREFIX}${id}.json`))?.created;
  }

  /** The running instance's heartbeat: the record's time becomes now (a lease renewal). */
  renew(id: string): Promise<void> {
    return this.backend.touch(`${PREFIX}${id}.json`);
  }

  /** Writes the record only if there is none: the one caller that succeeds owns the attempt. */
  create(id: string, record: BuildRecord): Promise<boolean> {
    return this.backend.createIfAbsent(`${PREFIX}${id}.json`, json(record), { contentType: 'application/json' });
  }

  async failure(id: string): Promise<BuildRecord | undefined> {
    const bytes = await readObject(this.backend, `${PREFIX}${id}.failed.json`);
    if (!bytes) return undefined;
    try {
      return JSON.parse(bytes.toString('utf8')) as BuildRecord;
    } catch {
      return undefined;
    }
  }

  async setFailure(id: string, record: BuildRecord): Promise<void> {
    await this.backend.delete(`${PREFIX}${id}.failed.json`);
    await this.backend.createIfAbsent(`${PREFIX}${id}.failed.json`, json(record), { contentType: 'application/json' });
  }

  /** Forgets a failure, unless a newer one replaced it meanwhile. */
  async deleteFailure(id: string, attempt: string): Promise<void> {
    const current = await this.failure(id);
    if (current?.attempt === attempt) await this.backend.delete(`${PREFIX}${id}.failed.json`);
  }

  /** Deletes the record only if it is still the one read (another attempt may have replaced it). */
  async deleteIf(id: string, attempt: string): Promise<void> {
    const current = await this.get(id);
    if (current?.attempt === attempt) await this.backend.delete(`${PREFIX}${id}.json`);
  }

  async setProgress(id: string, progress: string): Promise<void> {
    const name = `${PREFIX}${id}.progress`;
    await this.backend.delete(name);
    await this.backend.createIfAbsent(name, Readable.from([Buffer.from(progress)]), { contentType: 'text/plain' });
  }

  async progress(id: string): Promise<string | undefined> {
    return (await readObject(this.backend, `${PREFIX}${id}.progress`))?.toString('utf8');
  }

  async setLog(id: string, text: string): Promise<void> {
    const name = `${PREFIX}${id}.log`;
    await this.backend.delete(name);
    await this.backend.createIfAbsent(name, Readable.from([Buffer.from(text)]), { contentType: 'text/plain; charset=utf-8' });
  }

  async log(id: string): Promise<string | undefined> {
    return (await readObject(this.backend, `${PREFIX}${id}.log`))?.toString('utf8');
  }

  async source<T>(key: string): Promise<T | undefined> {
    const bytes = await readObject(this.backend, `${PREFIX}sources/${key}.json`);
    return bytes ? (JSON.parse(bytes.toString('utf8')) as T) : undefined;
  }

  /** Sources are immutable (named by commit): the first write stays. */
  async setSource(key: string, value: unknown): Promise<void> {
    await this.backend.createIfAbsent(`${PREFIX}sources/${key}.json`, json(value), { contentType: 'application/json' });
  }
}

function json(value: unknown): Readable {
  return Readable.from([Buffer.from(JSON.stringify(value))]);
}
