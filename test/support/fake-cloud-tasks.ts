/**
 * A tiny stand-in for the Cloud Tasks API, for tests only.
 *
 * Why it exists: there is no Cloud Tasks emulator to install, and the Cloud Tasks
 * backend should be tested through the real `@google-cloud/tasks` client. With
 * `fallback: true` the client speaks the REST form of the API; logging it showed the one
 * call the backend makes:
 *
 *   POST /v2/projects/P/locations/L/queues/Q/tasks?$alt=json;enum-encoding=int
 *   {"task":{"name":"projects/P/locations/L/queues/Q/tasks/ID",
 *            "httpRequest":{"url":...,"httpMethod":1,"headers":{...},"body":"<base64>",
 *                           "oidcToken":{"serviceAccountEmail":...,"audience":...}},
 *            "scheduleTime":"2030-01-01T00:00:00.500Z"}}
 *
 * It answers with the task (or 409 ALREADY_EXISTS for a name seen before, as Cloud
 * Tasks does), then delivers each task as Cloud Tasks would: at its schedule time, the
 * decoded body to its URL with its headers, the X-CloudTasks-* headers, and, for an
 * oidcToken, `Authorization: Bearer <ID token>` signed here with a test RSA key (RS256,
 * issuer accounts.google.com). Non-2xx answers are retried a few times with backoff.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createSign, randomUUID, type KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface FakeCloudTasksOptions {
  /** Signs the OIDC tokens; the server under test must trust the matching public key. */
  privateKey: KeyObject;
  /** The `kid` of the signing key in every token's header. */
  kid: string;
  /** Delivery attempts per task before giving up (default 5). */
  maxAttempts?: number;
  /** Backoff between attempts, doubled each time (default 100 ms). */
  backoffMs?: number;
}

export interface StoredTask {
  name: string;
  url: string;
  headers: Record<string, string>;
  body: Buffer;
  scheduleTime: Date;
  oidc?: { serviceAccountEmail: string; audience: string };
}

export interface Delivery {
  task: string;
  url: string;
  status: number;
  at: Date;
  /** Whether an Authorization header was sent. */
  withToken: boolean;
}

export interface FakeCloudTasks {
  /** Base URL for KONTAIN_CLOUD_TASKS_ENDPOINT, e.g. http://127.0.0.1:41234 */
  endpoint: string;
  tasks: Map<string, StoredTask>;
  /** createTask calls, in order, including refused duplicates. */
  creates: Array<{ name: string; status: number }>;
  deliveries: Delivery[];
  /** An ID token as this fake would sign it, with claims overridden (tests of refusal). */
  signToken(claims: Record<string, unknown>): string;
  close(): Promise<void>;
}

const CREATE_PATH = /^\/v2\/(projects\/[^/]+\/locations\/[^/]+\/queues\/[^/]+)\/tasks$/;
const TASK_NAME = /^(projects\/[^/]+\/locations\/[^/]+\/queues\/[^/]+)\/tasks\/([A-Za-z0-9_-]{1,500})$/;

class ApiError extends Error {
  constructor(readonly status: number, readonly rpcStatus: string, message: string) {
    super(message);
  }
}

export async function startFakeCloudTasks(options: FakeCloudTasksOptions): Promise<FakeCloudTasks> {
  const maxAttempts = options.maxAttempts ?? 5;
  const backoffMs = options.backoffMs ?? 100;
  const tasks = new Map<string, StoredTask>();
  const creates: FakeCloudTasks['creates'] = [];
  const deliveries: Delivery[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const base64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');
  function signToken(claims: Record<string, unknown>): string {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', kid: options.kid, typ: 'JWT' };
    const payload = { iss: 'https://accounts.google.com', iat: now, exp: now + 3600, sub: '100000000000000000001', email_verified: true, ...claims };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(options.privateKey);
    return `${signingInput}.${base64url(signature)}`;
  }

  function later(ms: number, fn: () => void): void {
    if (closed) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, Math.max(0, ms));
    timers.add(timer);
  }

  function deliver(task: StoredTask, attempt: number): void {
    if (closed) return;
    const headers: Record<string, string> = {
      ...task.headers,
      'User-Agent': 'Google-Cloud-Tasks',
      'X-CloudTasks-QueueName': task.name.split('/')[5]!,
      'X-CloudTasks-TaskName': task.name.split('/').pop()!,
      'X-CloudTasks-TaskRetryCount': String(attempt),
      'X-CloudTasks-TaskExecutionCount': String(attempt),
      'X-CloudTasks-TaskETA': String(task.scheduleTime.getTime() / 1000),
      'Content-Length': String(task.body.length),
    };
    if (task.oidc) headers.Authorization = `Bearer ${signToken({ aud: task.oidc.audience, email: task.oidc.serviceAccountEmail, azp: task.oidc.serviceAccountEmail })}`;
    const done = (status: number) => {
      deliveries.push({ task: task.name, url: task.url, status, at: new Date(), withToken: Boolean(task.oidc) });
      if (status >= 200 && status < 300) return;
      if (attempt + 1 < maxAttempts) later(backoffMs * 2 ** attempt, () => deliver(task, attempt + 1));
    };
    const req = httpRequest(task.url, { method: 'POST', headers, agent: false, timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('delivery timed out')));
    req.on('error', () => done(0));
    req.end(task.body);
  }

  function createTask(parent: string, body: unknown): unknown {
    const input = (body as { task?: Record<string, any> } | null)?.task;
    if (!input || typeof input !== 'object') throw new ApiError(400, 'INVALID_ARGUMENT', 'task is required');
    const http = input.httpRequest as Record<string, any> | undefined;
    if (!http || typeof http.url !== 'string') throw new ApiError(400, 'INVALID_ARGUMENT', 'only HTTP tasks with a url are supported here');
    // enum-encoding=int sends POST as 1; accept the name as well.
    if (http.httpMethod !== undefined && http.httpMethod !== 1 && http.httpMethod !== 'POST') {
      throw new ApiError(400, 'INVALID_ARGUMENT', `httpMethod ${http.httpMethod} is not supported here`);
    }
    let name: string;
    if (input.name !== undefined) {
      const match = TASK_NAME.exec(String(input.name));
      if (!match || match[1] !== parent) throw new ApiError(400, 'INVALID_ARGUMENT', `task name ${input.name} is not in ${parent}`);
      name = input.name;
    } else {
      name = `${parent}/tasks/${randomUUID().replace(/-/g, '')}`;
    }
    if (tasks.has(name)) throw new ApiError(409, 'ALREADY_EXISTS', 'Requested entity already exists');
    const scheduleTime = input.scheduleTime ? new Date(input.scheduleTime) : new Date();
    if (Number.isNaN(scheduleTime.getTime())) throw new ApiError(400, 'INVALID_ARGUMENT', `bad scheduleTime ${input.scheduleTime}`);
    const oidc = http.oidcToken as StoredTask['oidc'];
    const task: StoredTask = {
      name,
      url: http.url,
      headers: { ...(http.headers ?? {}) },
      body: Buffer.from(String(http.body ?? ''), 'base64'),
      scheduleTime,
      ...(oidc ? { oidc: { serviceAccountEmail: oidc.serviceAccountEmail, audience: oidc.audience ?? http.url } } : {}),
    };
    tasks.set(name, task);
    later(scheduleTime.getTime() - Date.now(), () => deliver(task, 0));
    // The BASIC view: no body, as Cloud Tasks answers by default.
    return { name, scheduleTime: scheduleTime.toISOString(), createTime: new Date().toISOString(), view: 1, dispatchCount: 0, responseCount: 0 };
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const send = (status: number, body: unknown) => {
        const bytes = Buffer.from(JSON.stringify(body));
        res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': bytes.length });
        res.end(bytes);
      };
      let requested = '';
      try {
        const match = CREATE_PATH.exec(path);
        if (req.method !== 'POST' || !match) throw new ApiError(404, 'NOT_FOUND', `no such method: ${req.method} ${path}`);
        const body = (() => {
          try {
            return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
          } catch {
            throw new ApiError(400, 'INVALID_ARGUMENT', 'body is not JSON');
          }
        })();
        requested = String((body as { task?: { name?: unknown } } | null)?.task?.name ?? '');
        const created = createTask(decodeURIComponent(match[1]!), body);
        creates.push({ name: (created as { name: string }).name, status: 200 });
        send(200, created);
      } catch (err) {
        const e = err instanceof ApiError ? err : new ApiError(500, 'INTERNAL', (err as Error).message);
        creates.push({ name: requested, status: e.status });
        send(e.status, { error: { code: e.status, message: e.message, status: e.rpcStatus } });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    tasks,
    creates,
    deliveries,
    signToken,
    async close() {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
