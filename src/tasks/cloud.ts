import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { TasksConfig } from '../config.js';
import { CloudTasksClient } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import { TaskHandlers, checkDelay, checkTaskName, type EnqueueOptions, type EnqueueResult, type JsonValue, type TaskHandler, type TaskQueue } from './queue.js';

/** The header carrying the shared secret, when one is configured. */
export const TASK_SECRET_HEADER = 'X-Kontain-Task-Secret';

/** gRPC status ALREADY_EXISTS: a task of that name exists or ran recently. */
const ALREADY_EXISTS = 6;
/** The same answer over REST: google-gax 5 passes the HTTP error through with its status. */
const HTTP_CONFLICT = 409;

/** The `cloud` form of KONTAIN_TASKS (documented on TasksConfig), plus a logger. */
export type CloudTaskQueueOptions = Omit<Extract<TasksConfig, { kind: 'cloud' }>, 'kind'> & { log: Logger };

/**
 * Cloud Tasks: each enqueue creates an HTTP task aimed at the service's own
 * `/_tasks/<name>` (endpoint.ts runs the handler there). Cloud Tasks does the waiting,
 * the retrying and the at-least-once delivery; nothing is held in this process.
 */
export class CloudTaskQueue implements TaskQueue {
  readonly kind = 'cloud';
  private readonly handlers = new TaskHandlers();
  private readonly client: CloudTasksClient;

  constructor(private readonly options: CloudTaskQueueOptions) {
    // The REST transport (fallback) rather than gRPC: one HTTP/1.1 client everywhere,
    // and a local endpoint can speak it.
    if (options.endpoint) {
      const url = new URL(options.endpoint);
      this.client = new CloudTasksClient({
        fallback: true,
        apiEndpoint: url.hostname,
        port: Number(url.port) || (url.protocol === 'http:' ? 80 : 443),
        protocol: url.protocol === 'http:' ? 'http' : 'https',
        authClient: new PassThroughClient(),
      });
    } else {
      this.client = new CloudTasksClient({ fallback: true });
    }
  }

  handle(name: string, handler: TaskHandler): void {
    this.handlers.add(name, handler);
  }

  run(name: string, payload: unknown): Promise<void> {
    return this.handlers.run(name, payload);
  }

  async enqueue(name: string, payload: JsonValue, delaySeconds: number, options: EnqueueOptions = {}): Promise<EnqueueResult> {
    checkTaskName(name);
    checkDelay(delaySeconds);
    const { queue, serviceUrl, serviceAccount, audience, secret } = this.options;
    const dueMs = Date.now() + delaySeconds * 1000;
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    // Anyone who may view the queue's tasks sees this header: prefer the OIDC token.
    if (secret) headers[TASK_SECRET_HEADER] = secret;
    const task = {
      // Task ids are [A-Za-z0-9_-]; a hash first spreads them, which Cloud Tasks prefers
      // over sequential names.
      ...(options.dedupeKey === undefined ? {} : { name: `${queue}/tasks/${taskId(name, options.dedupeKey)}` }),
      scheduleTime: { seconds: Math.floor(dueMs / 1000), nanos: Math.round((dueMs % 1000) * 1e6) },
      httpRequest: {
        httpMethod: 'POST' as const,
        url: `${serviceUrl}/_tasks/${name}`,
        headers,
        body: Buffer.from(JSON.stringify(payload)),
        ...(serviceAccount ? { oidcToken: { serviceAccountEmail: serviceAccount, audience } } : {}),
      },
    };
    try {
      await this.client.createTask({ parent: queue, task });
      return { created: true };
    } catch (err) {
      const { code, status } = err as { code?: unknown; status?: unknown };
      if (code === ALREADY_EXISTS || status === HTTP_CONFLICT) return { created: false };
      throw err;
    }
  }

  async start(): Promise<void> {
    this.options.log.info({ queue: this.options.queue, target: `${this.options.serviceUrl}/_tasks/` }, 'task queue started (Cloud Tasks)');
  }

  async stop(): Promise<void> {
    await this.client.close();
  }
}

export function taskId(name: string, dedupeKey: string): string {
  return `${createHash('sha256').update(`${name}\0${dedupeKey}`).digest('hex').slice(0, 40)}-${name}`;
}
