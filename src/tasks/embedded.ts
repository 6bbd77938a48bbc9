import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { readObject, type StorageBackend } from '../storage/backend.js';
import { setTasksPendingSource } from '../server/metrics.js';
import { TaskHandlers, checkDelay, checkTaskName, type EnqueueOptions, type EnqueueResult, type JsonValue, type TaskHandler, type TaskQueue } from './queue.js';

/** Where pending tasks live in the store; garbage collection never looks under `tasks/`. */
export const PENDING_PREFIX = 'tasks/pending/';

/** What is stored for one task: enough to run it after a restart. */
interface TaskRecord {
  name: string;
  payload: JsonValue;
  /** When it should run (ISO time). */
  due: string;
  enqueued: string;
}

interface Scheduled {
  record: TaskRecord;
  timer?: NodeJS.Timeout;
  /** Failures so far; kept in memory only, so a restart grants a fresh set of retries. */
  failures: number;
}

export interface EmbeddedQueueOptions {
  log: Logger;
  /** Attempts per task before it is dropped (logged as an error). Default 8. */
  maxAttempts?: number;
  /** Backoff after the first failure; doubles per failure up to maxBackoffMs. Default 1 s. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Handlers running at once: a restart after a long stop may find many tasks due. Default 4. */
  concurrency?: number;
}

/** setTimeout fires at once for delays above 2^31-1 ms; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * An in-process queue whose tasks are objects in the store (one per task, holding its
 * due time), written before enqueue returns. A server killed and restarted lists them on
 * start and runs the overdue ones at once; future ones get timers. An object is deleted
 * only after its handler succeeded, so a crash mid-run means the task runs again.
 *
 * Only the backend primitives are used (create-if-absent, read, delete, list), so it
 * works on fs and gcs alike. It assumes one server per store: several instances sharing
 * a bucket would each run the tasks they list on start (handlers are idempotent, so that
 * costs work, not correctness), and would not see each other's new tasks.
 */
export class EmbeddedTaskQueue implements TaskQueue {
  readonly kind = 'embedded';
  private readonly handlers = new TaskHandlers();
  private readonly scheduled = new Map<string, Scheduled>();
  private readonly running = new Set<Promise<void>>();
  /** Task ids due but waiting for a free handler slot, in due order of arrival. */
  private readonly ready: string[] = [];
  private started = false;
  private stopped = false;
  private unregisterMetrics?: () => void;
  private readonly log: Logger;
  private readonly maxAttempts: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly concurrency: number;

  constructor(private readonly backend: StorageBackend, options: EmbeddedQueueOptions) {
    this.log = options.log;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.baseBackoffMs = options.baseBackoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.concurrency = options.concurrency ?? 4;
  }

  handle(name: string, handler: TaskHandler): void {
    this.handlers.add(name, handler);
  }

  run(name: string, payload: unknown): Promise<void> {
    return this.handlers.run(name, payload);
  }

  /** Tasks persisted and not yet finished (the `kontain_tasks_pending` gauge). */
  pending(): number {
    return this.scheduled.size;
  }

  async enqueue(name: string, payload: JsonValue, delaySeconds: number, options: EnqueueOptions = {}): Promise<EnqueueResult> {
    checkTaskName(name);
    checkDelay(delaySeconds);
    const now = Date.now();
    const record: TaskRecord = { name, payload, due: new Date(now + delaySeconds * 1000).toISOString(), enqueued: new Date(now).toISOString() };
    // A dedupe key gives a fixed object name, so create-if-absent makes the second enqueue a no-op.
    const id =
      options.dedupeKey === undefined
        ? `${now}-${randomUUID()}`
        : `k-${createHash('sha256').update(`${name}\0${options.dedupeKey}`).digest('hex').slice(0, 40)}`;
    const created = await this.backend.createIfAbsent(objectName(id), Readable.from([Buffer.from(JSON.stringify(record))]), {
      contentType: 'application/json',
    });
    // Enqueued while stopped (or before start): the object waits for the next start.
    if (created && this.started && !this.stopped) this.schedule(id, record);
    return { created };
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.unregisterMetrics = setTasksPendingSource(() => this.pending());
    let overdue = 0;
    for await (const { name } of this.backend.list(PENDING_PREFIX)) {
      if (this.stopped) break;
      const id = idOf(name);
      if (!id || this.scheduled.has(id)) continue;
      const record = await this.readRecord(name);
      if (!record) continue;
      if (Date.parse(record.due) <= Date.now()) overdue++;
      this.schedule(id, record);
    }
    this.log.info({ pending: this.scheduled.size, overdue }, 'task queue started (embedded)');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unregisterMetrics?.();
    for (const entry of this.scheduled.values()) clearTimeout(entry.timer);
    this.ready.length = 0;
    // Handlers under way finish (or fail); their objects stay if they did not succeed.
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
    this.scheduled.clear();
  }

  private schedule(id: string, record: TaskRecord, delayMs = Date.parse(record.due) - Date.now()): void {
    const entry = this.scheduled.get(id) ?? { record, failures: 0 };
    this.scheduled.set(id, entry);
    this.arm(id, entry, Math.max(0, delayMs));
  }

  private arm(id: string, entry: Scheduled, delayMs: number): void {
    clearTimeout(entry.timer);
    const step = Math.min(delayMs, MAX_TIMER_MS);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (delayMs > step) this.arm(id, entry, delayMs - step);
      else this.markReady(id);
    }, step);
    // Timers never keep the process alive on their own; stop() clears them anyway.
    entry.timer.unref();
  }

  private markReady(id: string): void {
    if (this.stopped) return;
    this.ready.push(id);
    this.pump();
  }

  /** Starts ready tasks while there are free handler slots. */
  private pump(): void {
    while (!this.stopped && this.running.size < this.concurrency && this.ready.length > 0) {
      const id = this.ready.shift()!;
      const entry = this.scheduled.get(id);
      if (!entry) continue;
      const p: Promise<void> = this.execute(id, entry).finally(() => {
        this.running.delete(p);
        this.pump();
      });
      this.running.add(p);
    }
  }

  private async execute(id: string, entry: Scheduled): Promise<void> {
    const { record } = entry;
    const log = this.log.child({ task: record.name, taskId: id });
    try {
      await this.handlers.run(record.name, record.payload);
    } catch (err) {
      entry.failures++;
      if (entry.failures >= this.maxAttempts) {
        log.error({ err, payload: record.payload, attempts: entry.failures }, `task ${record.name} failed ${entry.failures} times; dropping it`);
        await this.forget(id, log);
        return;
      }
      const backoff = Math.min(this.baseBackoffMs * 2 ** (entry.failures - 1), this.maxBackoffMs);
      log.warn({ err, attempt: entry.failures, retryInMs: backoff }, `task ${record.name} failed; retrying`);
      if (!this.stopped) this.arm(id, entry, backoff);
      return;
    }
    log.info({ lateMs: Date.now() - Date.parse(record.due) }, `task ${record.name} done`);
    await this.forget(id, log);
  }

  private async forget(id: string, log: Logger): Promise<void> {
    // Out of the pending count first: once its object is gone, nothing may count it.
    this.scheduled.delete(id);
    try {
      await this.backend.delete(objectName(id));
    } catch (err) {
      // The task stays in the store and runs again after a restart: handlers are idempotent.
      log.error({ err }, 'could not delete a finished task');
    }
  }

  private async readRecord(name: string): Promise<TaskRecord | undefined> {
    const bytes = await readObject(this.backend, name);
    if (!bytes) return undefined; // finished since it was listed
    const text = bytes.toString('utf8');
    try {
      const record = JSON.parse(text) as Partial<TaskRecord>;
      if (typeof record.name === 'string' && typeof record.due === 'string' && !Number.isNaN(Date.parse(record.due))) {
        return { name: record.name, payload: record.payload ?? null, due: record.due, enqueued: record.enqueued ?? record.due };
      }
    } catch {
      // fall through
    }
    // Not written by this queue: left alone rather than deleted.
    this.log.error({ object: name }, 'ignoring a task object that is not a task record');
    return undefined;
  }
}

function objectName(id: string): string {
  return `${PENDING_PREFIX}${id}.json`;
}

function idOf(name: string): string | undefined {
  const match = /^tasks\/pending\/([A-Za-z0-9-]+)\.json$/.exec(name);
  return match?.[1];
}
