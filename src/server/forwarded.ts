import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

/*
 * What Express reports as `req.ip` and `req.protocol` with `trust proxy` on (app.ts), for
 * requests answered before Express (fast-entry.ts), so the log and host URLs are the same
 * on both paths. Written out because Express exports neither on its own.
 */

/** The left-most X-Forwarded-For address (blank entries skipped), else the TCP peer: Express's `req.ip`. */
export function clientIp(req: IncomingMessage): string | undefined {
  const header = headerText(req, 'x-forwarded-for');
  if (header) {
    for (const part of header.split(',')) {
      const address = part.replace(/^ +| +$/g, '');
      if (address) return address;
    }
  }
  return req.socket.remoteAddress;
}

/** The first X-Forwarded-Proto value, else the connection's own: Express's `req.protocol`. */
export function requestProtocol(req: IncomingMessage): string {
  const own = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  const header = headerText(req, 'x-forwarded-proto') || own;
  const comma = header.indexOf(',');
  return comma !== -1 ? header.substring(0, comma).trim() : header.trim();
}

/** A header as one string (node joins repeated ones with ", " already; typed as possibly a list). */
function headerText(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
