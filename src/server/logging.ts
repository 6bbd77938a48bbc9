import pino, { type Logger } from 'pino';
import type { Request, Response, NextFunction } from 'express';
import type { RequestLogFields } from '../registry/router.js';
import { responseBytes } from './response-bytes.js';

/** pino levels as Cloud Logging severities, so the console shows them. */
const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      messageKey: 'message',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT' }),
      },
    },
    destination,
  );
}

/** The Cloud Logging trace name for a request's `X-Cloud-Trace-Context`, if it has one. */
export function traceOf(header: string | undefined, project: string | undefined): string | undefined {
  const traceId = header?.split('/')[0]?.trim();
  if (!traceId || !/^[0-9a-fA-F]{1,64}$/.test(traceId)) return undefined;
  return project ? `projects/${project}/traces/${traceId}` : traceId;
}

/**
 * One log line per request, written when the response is finished (or the client went
 * away), in Cloud Logging's `httpRequest` shape, with the registry fields the router set.
 */
export function requestLogger(log: Logger, project: string | undefined) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    const trace = traceOf(req.get('x-cloud-trace-context'), project);
    const fields: RequestLogFields = {};
    res.locals.fields = fields;
    res.locals.log = trace ? log.child({ 'logging.googleapis.com/trace': trace }) : log;
    const bytesSent = responseBytes(res);
    let logged = false;
    const done = () => {
      if (logged) return;
      logged = true;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const bytes = bytesSent();
      const status = res.writableFinished ? res.statusCode : 499;
      const line = {
        ...fields,
        bytes,
        durationMs: Math.round(seconds * 1000),
        httpRequest: {
          requestMethod: req.method,
          requestUrl: req.originalUrl,
          status,
          responseSize: String(bytes),
          userAgent: req.get('user-agent'),
          remoteIp: req.ip,
          latency: `${seconds.toFixed(3)}s`,
          protocol: `HTTP/${req.httpVersion}`,
        },
      };
      const level = status >= 500 ? 'error' : 'info';
      (res.locals.log as Logger)[level](line, `${req.method} ${req.originalUrl} ${status}`);
    };
    res.on('finish', done);
    res.on('close', done);
    next();
  };
}
