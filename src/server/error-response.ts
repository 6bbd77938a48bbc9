import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { RegistryError, reasonPhrase } from '../registry/errors.js';

/**
 * Renders an error as the spec's JSON body (Express's error handler and the fast entry
 * both answer through this). An error that is not a RegistryError is logged and answered
 * as UNKNOWN; once headers are out, the connection is cut instead.
 */
export function sendError(err: unknown, req: IncomingMessage, res: ServerResponse, log: Logger, url: string): void {
  const known = err instanceof RegistryError ? err : undefined;
  const error = known ?? new RegistryError('UNKNOWN', 'internal error while making this image; the log has the details');
  if (!known) log.error({ err }, `unexpected error on ${req.method} ${url}`);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = Buffer.from(JSON.stringify(error.toJSON()));
  res.statusCode = error.status;
  // containerd resolves tags with HEAD and prints only the status line: say why there too.
  res.statusMessage = reasonPhrase(error.message);
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', body.length);
  if (req.method === 'HEAD') res.end();
  else res.end(body);
}
