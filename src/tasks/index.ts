import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { StorageBackend } from '../storage/backend.js';
import { EmbeddedTaskQueue } from './embedded.js';
import type { TaskQueue } from './queue.js';

export type { TaskQueue, TaskHandler, JsonValue, EnqueueOptions, EnqueueResult } from './queue.js';

/** The queue KONTAIN_TASKS selects: embedded (persisted in the store) or Cloud Tasks. */
export async function createTaskQueue(config: Config, backend: StorageBackend, log: Logger): Promise<TaskQueue> {
  const tasks = config.tasks;
  if (tasks.kind === 'embedded') return new EmbeddedTaskQueue(backend, { log });
  // Loaded only when used, so the embedded default never pays for the Cloud Tasks client.
  const { CloudTaskQueue } = await import('./cloud.js');
  const { kind: _kind, ...options } = tasks;
  return new CloudTaskQueue({ ...options, log });
}

export interface TaskEndpointDependencies {
  /** Signing keys (key id → PEM) trusted instead of Google's, for tests. */
  tokenCerts?: Record<string, string>;
}

/**
 * The `POST /_tasks/:name` router when tasks arrive over HTTP (Cloud Tasks); undefined
 * for the embedded queue, which runs its handlers in-process.
 */
export async function createTaskEndpoint(
  config: Config,
  queue: TaskQueue,
  log: Logger,
  dependencies: TaskEndpointDependencies = {},
): Promise<RequestHandler | undefined> {
  const tasks = config.tasks;
  if (tasks.kind !== 'cloud') return undefined;
  const { taskEndpoint, googleIdTokenVerifier } = await import('./endpoint.js');
  return taskEndpoint({
    tasks: queue,
    audience: tasks.audience,
    serviceAccount: tasks.serviceAccount,
    secret: tasks.secret,
    verifier: googleIdTokenVerifier(dependencies.tokenCerts),
    log,
  });
}
