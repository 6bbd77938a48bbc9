/**
 * Slow work answered while it runs: one facility of the core for every host whose images
 * take a while to make (kaniko builds, ko builds, apko, nix) or are made only later (wait).
 *
 * A pull asks `obtain(job)`. The first pull of a job writes an attempt record
 * (create-if-absent: concurrent pulls, on any instance, start one attempt) and enqueues a
 * `build` task; the task runs the job's registered runner wherever it is delivered (the
 * embedded queue in this process, or Cloud Tasks calling back). Every pull then holds for
 * at most KONTAIN_BUILD_HOLD: an image made in time is served, otherwise the answer is
 * 404 MANIFEST_UNKNOWN "building <label> (step 3/7), pull again" with Retry-After, and
 * the work goes on. Containerd gives up after 30 s without response headers, so a build
 * never holds a request longer than that.
 *
 * The attempt record is also a lease: the instance running the work renews it (touches
 * it) every third of `leaseTtlMs`. An attempt whose record has not been renewed for
 * `leaseTtlMs` was lost with its instance, and the next pull starts another, on any
 * instance (issue 12: one build per image across instances, taken over when its holder dies).
 *
 * Delayed work (wait's, `SlowJob.delaySeconds`) has a due time in its attempt record and
 * its task enqueued with that delay; until then every pull is answered at once "not ready
 * yet: it will be ready at <time> (in N s)" with Retry-After N, and the lease runs from
 * the due time. A runner may also hand its work on to a later task (`JobRunner` returns
 * `{ again }`: a Cloud Build being polled), so no CPU is held between looks; the record
 * is renewed by each task.
 *
 * A failed attempt is remembered (error, last log lines) for KONTAIN_BUILD_FAILURE_TTL
 * and answered without rebuilding. Each attempt's log is readable at
 * `/_builds/<id>/log` on any host, while it runs and after.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { attemptAliveAt, BuildRecords, type BuildRecord } from '../content/build-records.js';
import type { ContentStore } from '../content/store.js';
import type { Descriptor } from '../oci/types.js';
import { isSha256Digest } from '../oci/digest.js';
import { RegistryError, type ErrorCodeName } from '../registry/errors.js';
import type { JsonValue, TaskQueue } from '../tasks/queue.js';
import { BuildLog } from './build-log.js';

/** One piece of slow work, named by everything that decides its result. */
export interface SlowJob {
  /** The runner registered for it (`kaniko`, `ko`, …). */
  kind: string;
  /** Pointer namespace and key the result is cached under (see ContentStore.cached). */
  service: string;
  key: string;
  /** What a person calls it: `owner/repo@abc1234`. */
  label: string;
  /** Enough for the runner to do the work on any instance. */
  payload: JsonValue;
  /** Work not to be done before this many seconds from the first pull (wait); default at once. */
  delaySeconds?: number;
}

export interface JobContext {
  /** The attempt's log: each line of the builder's output. */
  line(text: string): void;
  /** Where the work is ("step 3/7"); shown to pulls that find it running. */
  progress(text: string): void;
  /** What the previous task of this attempt handed on (`JobContinuation.state`); undefined on the first. */
  resume?: JsonValue;
  log: Logger;
}

/** The work is not done: run the runner again in a later task, given `state` as `resume`. */
export interface JobContinuation {
  again: { afterSeconds: number; state: JsonValue };
}

/**
 * Does the work (or a step of it); throws RegistryError for failures a client should see
 * as they are.
 */
export type JobRunner = (payload: unknown, context: JobContext) => Promise<Descriptor | JobContinuation>;

export interface ObtainOptions {
  /** The request's own `scheme://host`, for the log URL in messages. */
  baseUrl?: string;
  /** Rebuild even though the key has an image (its inputs were found to have moved). */
  replace?: boolean;
  log: Logger;
}

export interface BuildFacilityOptions {
  store: ContentStore;
  tasks?: TaskQueue;
  holdMs: number;
  failureTtlMs: number;
  /** An attempt whose record was not renewed for this long was lost (its instance died): the next pull starts another. */
  leaseTtlMs: number;
  log: Logger;
}

const TASK = 'build';
/** Retry-After of a "still building" answer, in seconds. */
const RETRY_AFTER_SECONDS = 5;
/** Failures of the service rather than the job (5xx) are remembered only briefly. */
const TRANSIENT_FAILURE_TTL_MS = 30_000;
const POLL_MS = 250;
/** Lines of the log quoted in a failure's message. */
const TAIL_LINES = 15;

interface TaskPayload {
  id: string;
  attempt: string;
  kind: string;
  service: string;
  key: string;
  label: string;
  payload: JsonValue;
  /** A continuation's state and its number (the task's dedupe key). */
  resume?: JsonValue;
  step?: number;
}

interface Running {
  attempt: string;
  done: Promise<Descriptor | JobContinuation>;
  log: BuildLog;
  progress?: string;
}

export class BuildFacility {
  private readonly runners = new Map<string, JobRunner>();
  /** Task names of kinds that have their own (wait's `wait`); the rest use `build`. */
  private readonly taskNames = new Map<string, string>();
  /** Imports what registers a kind's runner, for kinds whose host module loads on first use. */
  private readonly runnerLoaders = new Map<string, () => Promise<unknown>>();
  private readonly records: BuildRecords;
  /** Attempts running in this process, by id. */
  private readonly running = new Map<string, Running>();

  constructor(private readonly options: BuildFacilityOptions) {
    this.records = new BuildRecords(options.store.backend);
    options.tasks?.handle(TASK, (payload) => this.runTask(payload));
  }

  /**
   * `options.task` gives the kind's tasks their own name (and URL, `/_tasks/<name>`, on
   * Cloud Tasks); `options.isStale` recognises payloads an earlier version of the host
   * enqueued under that name, acknowledged and dropped (their next pull starts anew).
   */
  register(kind: string, runner: JobRunner, options: { task?: string; isStale?(payload: unknown): boolean } = {}): void {
    if (this.runners.has(kind)) throw new Error(`slow work ${kind} already has a runner`);
    this.runners.set(kind, runner);
    if (options.task && options.task !== TASK) {
      this.taskNames.set(kind, options.task);
      this.options.tasks?.handle(options.task, async (payload) => {
        if (options.isStale?.(payload)) {
          this.options.log.info({ task: options.task }, 'task from an earlier version of its host; nothing to do');
          return;
        }
        await this.runTask(payload);
      });
    }
  }

  private taskOf(kind: string): string {
    return this.taskNames.get(kind) ?? TASK;
  }

  /**
   * How to get a kind's runner registered when it is not yet: a task for it (resumed by
   * the queue, or enqueued by another instance) can arrive before this process's first
   * pull of that host has loaded the host's module, which registers the runner.
   */
  registerLoader(kind: string, load: () => Promise<unknown>): void {
    this.runnerLoaders.set(kind, load);
  }

  private async runnerFor(kind: string): Promise<JobRunner | undefined> {
    if (!this.runners.has(kind)) await this.runnerLoaders.get(kind)?.();
    return this.runners.get(kind);
  }

  /** The id of a job: names its records, its task and its log URL. */
  static idOf(job: Pick<SlowJob, 'service' | 'key'>): string {
    return createHash('sha256').update(`${job.service}\0${job.key}`).digest('hex').slice(0, 32);
  }

  static logPath(id: string): string {
    return `/_builds/${id}/log`;
  }

  /**
   * The job's image: cached, made within the hold, or an answer saying it is being made
   * (or why it failed). Starts the work when nothing is running for it.
   */
  async obtain(job: SlowJob, options: ObtainOptions): Promise<Descriptor> {
    const id = BuildFacility.idOf(job);
    const deadline = Date.now() + this.options.holdMs;
    const logUrl = `${options.baseUrl ?? ''}${BuildFacility.logPath(id)}`;
    // Bounded: each round either answers, or found the attempt gone (replaced) and looks again.
    for (let round = 0; round < 3; round++) {
      // The attempt record first: an attempt writes its outcome before deleting it, so
      // with no attempt record, an outcome there is will be seen below.
      let record = await this.records.get(id);
      let overdue = false;
      if (record && (await this.isOver(id, record, Date.now()))) {
        await this.records.deleteIf(id, record.attempt);
        // Delayed work whose task was lost past its due time is owed already: the next attempt runs at once.
        overdue = record.due !== undefined;
        record = undefined;
      }
      if (!record) {
        if (!options.replace || round > 0) {
          const done = await this.cachedImage(job);
          if (done) return done;
        }
        const failed = await this.records.failure(id);
        if (failed && !(await this.isOver(id, failed, Date.now()))) throw failure(job, failed, logUrl);
        if (failed) await this.records.deleteFailure(id, failed.attempt);
        record = await this.start(id, job, options.log, overdue);
        if (!record) continue; // another pull started one first: join it
      }
      if (record.due && Date.parse(record.due) > Date.now()) throw notDue(job, record.due);
      const outcome = await this.hold(id, job, record, deadline, logUrl);
      if (outcome) return outcome;
    }
    throw new RegistryError('UNAVAILABLE', `${job.label} is being started by several pulls at once; pull again`, { headers: { 'Retry-After': '1' } });
  }

  /** The log of an attempt: live while it runs here, else the stored one. */
  async logText(id: string): Promise<string | undefined> {
    const live = this.running.get(id);
    if (live) return live.log.text();
    return this.records.log(id);
  }

  private async cachedImage(job: SlowJob, since?: string): Promise<Descriptor | undefined> {
    const pointer = await this.options.store.getPointer(job.service, job.key);
    if (!pointer || (since && pointer.created < since) || !isSha256Digest(pointer.descriptor?.digest ?? '')) return undefined;
    return (await this.options.store.getManifest(pointer.descriptor.digest)) ? pointer.descriptor : undefined;
  }

  /** A running attempt its instance stopped renewing, or a failure remembered long enough. */
  private async isOver(id: string, record: BuildRecord, now: number): Promise<boolean> {
    if (record.state === 'running') return now - attemptAliveAt(record, await this.records.renewedAt(id)) > this.options.leaseTtlMs;
    const ttl = (record.error?.status ?? 0) >= 500 ? Math.min(TRANSIENT_FAILURE_TTL_MS, this.options.failureTtlMs) : this.options.failureTtlMs;
    return now - Date.parse(record.finished ?? record.started) > ttl;
  }

  /** Writes the attempt record and hands the work to the queue; undefined if another pull got there first. */
  private async start(id: string, job: SlowJob, log: Logger, overdue = false): Promise<BuildRecord | undefined> {
    if (!(await this.runnerFor(job.kind))) throw new Error(`no runner for slow work ${job.kind}`);
    const delaySeconds = overdue ? 0 : (job.delaySeconds ?? 0);
    if (delaySeconds > 0 && !this.options.tasks) throw new RegistryError('UNAVAILABLE', `${job.label} is delayed work, and this server was started without a task queue`);
    const now = Date.now();
    const record: BuildRecord = { state: 'running', attempt: randomUUID(), label: job.label, started: new Date(now).toISOString() };
    if (job.delaySeconds !== undefined) record.due = new Date(now + delaySeconds * 1000).toISOString();
    if (!(await this.records.create(id, record))) return undefined;
    const payload: TaskPayload = { id, attempt: record.attempt, kind: job.kind, service: job.service, key: job.key, label: job.label, payload: job.payload };
    log.info({ build: id, label: job.label, kind: job.kind }, 'build started');
    if (!this.options.tasks) {
      // No queue (a server built without one): the work runs here.
      void this.runTask(payload);
      return record;
    }
    try {
      await this.options.tasks.enqueue(this.taskOf(job.kind), { ...payload }, delaySeconds, { dedupeKey: `${id}@${record.attempt}` });
    } catch (err) {
      // No task, no attempt: the next pull starts over.
      await this.records.deleteIf(id, record.attempt).catch(() => undefined);
      throw err;
    }
    return record;
  }

  /**
   * Waits until the deadline for the attempt's outcome: its image, its failure, or (past
   * the deadline) the "still building" answer. Undefined when the attempt vanished.
   */
  private async hold(id: string, job: SlowJob, record: BuildRecord, deadline: number, logUrl: string): Promise<Descriptor | undefined> {
    for (;;) {
      const remaining = deadline - Date.now();
      const local = this.running.get(id);
      if (local && local.attempt === record.attempt) {
        if (!(await settlesWithin(local.done, remaining))) break;
      } else {
        if (remaining <= 0) break;
        await sleep(Math.min(POLL_MS, remaining));
      }
      const image = await this.cachedImage(job, record.started);
      if (image) return image;
      const failed = await this.records.failure(id);
      if (failed?.attempt === record.attempt) throw failure(job, failed, logUrl);
      const current = await this.records.get(id);
      if (!current || current.attempt !== record.attempt) return undefined;
      // Its instance died: obtain's next round replaces the attempt.
      if (!local && (await this.isOver(id, current, Date.now()))) return undefined;
    }
    const progress = this.running.get(id)?.progress ?? (await this.records.progress(id));
    const detail = { build: id, log: logUrl, ...(progress ? { progress } : {}), retryAfterSeconds: RETRY_AFTER_SECONDS };
    throw new RegistryError('MANIFEST_UNKNOWN', `building ${job.label}${progress ? ` (${progress})` : ''}, pull again in a few seconds; log: ${logUrl}`, {
      headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) },
      detail,
    });
  }

  /** The `build` task: runs one attempt, once, and records its outcome. A failure is final, not retried. */
  private async runTask(raw: unknown): Promise<void> {
    const task = parsePayload(raw);
    const here = this.running.get(task.id);
    if (here) {
      await here.done.catch(() => undefined);
      return;
    }
    const record = await this.records.get(task.id);
    if (!record || record.attempt !== task.attempt || record.state !== 'running') {
      this.options.log.info({ build: task.id, label: task.label }, 'build task no longer has its attempt; nothing to do');
      return;
    }
    const log = this.options.log.child({ build: task.id, label: task.label });
    const buildLog = new BuildLog();
    if (task.resume !== undefined) {
      // The earlier tasks' lines, as they stored them.
      const earlier = await this.records.log(task.id).catch(() => undefined);
      for (const line of earlier?.replace(/\n$/, '').split('\n') ?? []) buildLog.add(line);
      await this.records.renew(task.id).catch(() => undefined);
    }
    const entry: Running = { attempt: task.attempt, done: undefined as never, log: buildLog };
    const context: JobContext = {
      line: (text) => buildLog.add(text),
      progress: (text) => {
        entry.progress = text;
        void this.records.setProgress(task.id, text).catch(() => undefined);
      },
      resume: task.resume,
      log,
    };
    const started = Date.now();
    entry.done = (async () => {
      const runner = await this.runnerFor(task.kind);
      if (!runner) throw new Error(`no runner for slow work ${task.kind} in this process`);
      return runner(task.payload, context);
    })();
    this.running.set(task.id, entry);
    const heartbeat = setInterval(() => void this.records.renew(task.id).catch(() => undefined), Math.max(1, Math.floor(this.options.leaseTtlMs / 3)));
    heartbeat.unref();
    try {
      const outcome = await entry.done;
      if ('again' in outcome) {
        // Off the running list first: the next task may be delivered at once.
        clearInterval(heartbeat);
        this.running.delete(task.id);
        await this.handOn(task, outcome, buildLog);
        return;
      }
      const descriptor = outcome;
      await this.options.store.setPointer(task.service, task.key, descriptor);
      buildLog.add(`kontain: built ${descriptor.digest} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      await this.records.setLog(task.id, buildLog.text());
      await this.records.deleteIf(task.id, task.attempt);
      log.info({ digest: descriptor.digest, ms: Date.now() - started }, 'build done');
    } catch (err) {
      const error = asRegistryError(err);
      if (!(err instanceof RegistryError)) log.error({ err }, 'build failed unexpectedly');
      else log.info({ code: error.code, message: error.message }, 'build failed');
      buildLog.add(`kontain: failed: ${error.message}`);
      await this.records.setLog(task.id, buildLog.text()).catch(() => undefined);
      await this.records.setFailure(task.id, {
        ...record,
        state: 'failed',
        finished: new Date().toISOString(),
        error: { code: error.code, status: error.status, message: error.message },
        logTail: buildLog.tail(TAIL_LINES),
      });
      await this.records.deleteIf(task.id, task.attempt);
    } finally {
      clearInterval(heartbeat);
      if (this.running.get(task.id) === entry) this.running.delete(task.id);
    }
  }

  /** A runner that is not done: its log so far is stored and a later task carries its state. */
  private async handOn(task: TaskPayload, outcome: JobContinuation, buildLog: BuildLog): Promise<void> {
    if (!this.options.tasks) throw new Error(`slow work ${task.kind} hands work on to a later task, and this server has no task queue`);
    await this.records.setLog(task.id, buildLog.text());
    // The record is renewed only when a task runs: a look later than the lease would let
    // another pull take the work over.
    const afterSeconds = Math.min(Math.max(0, outcome.again.afterSeconds), this.options.leaseTtlMs / 3000);
    const step = (task.step ?? 0) + 1;
    const next: TaskPayload = { ...task, resume: outcome.again.state, step };
    await this.options.tasks.enqueue(this.taskOf(task.kind), { ...next }, afterSeconds, { dedupeKey: `${task.id}@${task.attempt}#${step}` });
    await this.records.renew(task.id);
  }
}

function failure(job: SlowJob, record: BuildRecord, logUrl: string): RegistryError {
  const error = record.error ?? { code: 'UNKNOWN', status: 500, message: 'failed' };
  const tail = record.logTail?.length ? `\nlast lines of the log:\n${record.logTail.join('\n')}` : '';
  return new RegistryError(error.code as ErrorCodeName, `build of ${job.label} failed: ${error.message}${tail}\nlog: ${logUrl}`, {
    status: error.status,
    detail: { build: BuildFacility.idOf(job), log: logUrl, finished: record.finished },
  });
}

/** Delayed work before its due time: when to come back. */
function notDue(job: SlowJob, due: string): RegistryError {
  const dueMs = Date.parse(due);
  const seconds = Math.max(1, Math.ceil((dueMs - Date.now()) / 1000));
  return new RegistryError('MANIFEST_UNKNOWN', `${job.label} is not ready yet: it will be ready at ${due} (in ${seconds} s); pull again then`, {
    headers: { 'Retry-After': String(seconds) },
    detail: { readyAt: due, retryAfterSeconds: seconds },
  });
}

function asRegistryError(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  return new RegistryError('UNKNOWN', 'internal error while building; the server log has the details');
}

function parsePayload(raw: unknown): TaskPayload {
  const p = raw as Partial<TaskPayload> | null;
  const strings = ['id', 'attempt', 'kind', 'service', 'key', 'label'] as const;
  if (!p || strings.some((field) => typeof p[field] !== 'string') || !/^[0-9a-f]{32}$/.test(p.id!)) {
    throw new Error(`not a build task payload: ${JSON.stringify(raw)?.slice(0, 200)}`);
  }
  return p as TaskPayload;
}

/** Whether the promise settles (either way) within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  if (ms <= 0) return false;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
