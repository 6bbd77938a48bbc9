import http from 'node:http';

export interface HttpResult {
  status: number;
  /** The reason phrase of the status line, as the server wrote it. */
  statusMessage?: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A plain HTTP request that may set any header, Host included (fetch may not). */
export function request(
  url: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: string; /** Idle time allowed, default 60 s. */ timeoutMs?: number } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, timeout: options.timeoutMs ?? 60_000, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, statusMessage: res.statusMessage, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The single error of a registry error body. */
export function registryError(result: HttpResult): { code: string; message: string } {
  const parsed = JSON.parse(result.body.toString('utf8')) as { errors: Array<{ code: string; message: string }> };
  if (parsed.errors.length !== 1) throw new Error(`expected one error, got ${result.body.toString()}`);
  return parsed.errors[0]!;
}

/** A GET that can be abandoned: `leave()` closes the connection; `done` resolves with the status. */
export function openRequest(url: string): { done: Promise<number>; leave(): void } {
  let req!: http.ClientRequest;
  const done = new Promise<number>((resolve, reject) => {
    req = http.get(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
  done.catch(() => undefined);
  return { done, leave: () => req.destroy() };
}
