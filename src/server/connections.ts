import { createServer, type RequestListener, type Server } from 'node:http';
import { isIP, type Socket } from 'node:net';
import type { Logger } from 'pino';

export interface ConnectionLimits {
  /** Time a connection may take to send a request's headers (idle sockets and half requests included). */
  headersTimeoutSeconds: number;
  /** Open connections per client address; 0 means no cap. */
  maxConnectionsPerClient: number;
}

/** An idle keep-alive connection is closed this long after its last response (Node's default). */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Beyond the headers, a request body (only task deliveries have one, and small) gets this long. */
const REQUEST_BODY_MS = 60_000;

/**
 * The HTTP server with its connection limits. The timeouts cover only what the client
 * sends (headers, body) and idle time between requests, never the response: a blob
 * download or a long image build keeps its connection for as long as it takes.
 */
export function createLimitedServer(app: RequestListener, limits: ConnectionLimits, log: Logger): Server {
  const headersTimeout = limits.headersTimeoutSeconds * 1000;
  const server = createServer(
    {
      headersTimeout,
      requestTimeout: headersTimeout + REQUEST_BODY_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      // Node looks for expired headers and requests only this often (default 30 s).
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    },
    app,
  );
  if (limits.maxConnectionsPerClient > 0) capConnectionsPerClient(server, limits.maxConnectionsPerClient, log);
  return server;
}

/**
 * Closes a client's connections beyond `max` as they are accepted, so one client holding
 * thousands of idle sockets cannot use up the process's file descriptors. The client is
 * the TCP peer: X-Forwarded-For cannot be known before a request is read, and any client
 * can write it. Behind a proxy (Cloud Run) every connection comes from the proxy, so the
 * cap is off there by default (see the README).
 */
function capConnectionsPerClient(server: Server, max: number, log: Logger): void {
  const open = new Map<string, number>();
  const warned = new Set<string>();
  server.on('connection', (socket: Socket) => {
    const client = clientKey(socket.remoteAddress);
    const count = (open.get(client) ?? 0) + 1;
    if (count > max) {
      if (!warned.has(client)) {
        warned.add(client);
        log.warn({ client, open: max }, `client ${client} has ${max} connections open (KONTAIN_MAX_CONNECTIONS_PER_CLIENT); closing its further ones`);
      }
      socket.destroy();
      return;
    }
    open.set(client, count);
    socket.once('close', () => {
      const left = (open.get(client) ?? 1) - 1;
      if (left > 0) open.set(client, left);
      else {
        open.delete(client);
        warned.delete(client);
      }
    });
  });
}

/**
 * The address a connection is counted under: IPv4 as is (also when mapped into IPv6),
 * IPv6 by its /64, since one host usually holds a whole /64.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIP(address) !== 6) return address;
  const [head = '', tail] = address.split('::');
  const first = head ? head.split(':') : [];
  const last = tail ? tail.split(':') : [];
  const groups = tail === undefined ? first : [...first, ...Array<string>(Math.max(0, 8 - first.length - last.length)).fill('0'), ...last];
  const prefix = groups.slice(0, 4).map((group) => parseInt(group, 16).toString(16));
  return `${prefix.join(':')}::/64`;
}
