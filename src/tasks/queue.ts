/**
 * Delayed work: enqueue a named task with a JSON payload to run after a delay; one
 * handler per task name. Two backends implement it: an in-process queue persisted in
 * the store (embedded.ts) and Cloud Tasks calling back `POST /_tasks/<name>` (cloud.ts).
 *
 * Delivery is at least once on both (a crash after a handler finished but before the
 * task was deleted, Cloud Tasks' own retries), so handlers must be idempotent.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * Runs one task. The payload arrives parsed from storage or HTTP, so it is `unknown`:
 * validate it. Rejecting means "try again later" (with backoff), not "drop".
 */
export type TaskHandler = (payload: unknown) => Promise<void>;

export interface EnqueueOptions {
  /**
   * Names one piece of work: a second enqueue with the same name and key, while the
   * first is known to the backend, is a no-op. Cloud Tasks keeps a used task name
   * reserved for a while after the task ran, so a key must never be reused for
   * different work (put something that changes per occurrence in it).
   */
  dedupeKey?: string;
}

export interface EnqueueResult {
  /** False when a task with the same name and dedupe key already existed. */
  created: boolean;
}

export interface TaskQueue {
  readonly kind: 'embedded' | 'cloud';
  /** Registers the handler of a task name (before start). */
  handle(name: string, handler: TaskHandler): void;
  /** Schedules `name` with `payload` to run `delaySeconds` (fractions allowed) from now. */
  enqueue(name: string, payload: JsonValue, delaySeconds: number, options?: EnqueueOptions): Promise<EnqueueResult>;
  /** Runs the handler of a task delivered from outside (the Cloud Tasks endpoint). */
  run(name: string, payload: unknown): Promise<void>;
  start(): Promise<void>;
  /** Stops timers and waits for handlers under way; pending tasks stay for the next start. */
  stop(): Promise<void>;
}

/** Task names end up in URLs (`/_tasks/<name>`) and object names: keep them plain. */
const TASK_NAME = /^[a-z][a-z0-9-]{0,62}$/;

export function checkTaskName(name: string): void {
  if (!TASK_NAME.test(name)) throw new Error(`invalid task name ${JSON.stringify(name)}: use a-z, 0-9 and -, starting with a letter`);
}

/** A delivered task whose name has no handler in this process. */
export class UnknownTask extends Error {
  constructor(readonly taskName: string) {
    super(`no handler for task ${JSON.stringify(taskName)}`);
    this.name = 'UnknownTask';
  }
}

/** The handler table both backends share. */
export class TaskHandlers {
  private readonly handlers = new Map<string, TaskHandler>();

  add(name: string, handler: TaskHandler): void {
    checkTaskName(name);
    if (this.handlers.has(name)) throw new Error(`task ${name} already has a handler`);
    this.handlers.set(name, handler);
  }

  async run(name: string, payload: unknown): Promise<void> {
    const handler = this.handlers.get(name);
    if (!handler) throw new UnknownTask(name);
    await handler(payload);
  }
}

export function checkDelay(delaySeconds: number): void {
  if (!Number.isFinite(delaySeconds) || delaySeconds < 0) throw new Error(`task delay ${delaySeconds} s is not a non-negative number`);
}
