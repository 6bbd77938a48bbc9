/**
 * A loopback HTTP proxy in front of a test upstream that records every request (method,
 * path, Authorization) and lets a test answer chosen requests itself — to count HEADs,
 * inject 429/503, stall a body or redirect to another host.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  path: string;
  /** The Host header the client sent. */
  host?: string;
  authorization?: string;
}

/** Returns true when it answered the request itself; false to pass it upstream. */
export type Interceptor = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => boolean;

export interface UpstreamProxy {
  /** `127.0.0.1:PORT` */
  host: string;
  url: string;
  requests: SeenRequest[];
  intercept(fn: Interceptor | undefined): void;
  stop(): Promise<void>;
}

/** Starts a proxy to `target` (`host:port`); with no target, every request must be intercepted. */
export async function startUpstreamProxy(target?: string): Promise<UpstreamProxy> {
  const requests: SeenRequest[] = [];
  let interceptor: Interceptor | undefined;
  const server = http.createServer((req, res) => {
    const seen: SeenRequest = { method: req.method ?? 'GET', path: req.url ?? '/', host: req.headers.host, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) };
    requests.push(seen);
    if (interceptor?.(req, res, seen)) return;
    if (!target) {
      res.writeHead(502).end('no upstream');
      return;
    }
    const upstream = http.request(
      `http://${target}${req.url}`,
      { method: req.method, headers: { ...req.headers, host: target } },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    url: `http://${host}`,
    requests,
    intercept: (fn) => {
      interceptor = fn;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
