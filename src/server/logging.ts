import pino, { type Logger } from 'pino';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, Response, NextFunction } from 'express';
import type { RequestLogFields } from '../registry/router.js';
import { responseBytes } from './response-bytes.js';
import { scrubLogFields, scrubText } from './redact.js';
import type { Config } from '../config.js';

/** pino levels as Cloud Logging severities, so the console shows them. */
const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

/**
 * The service's logger. Every line is scrubbed of secrets (see redact.ts): `secrets` are
 * exact values to remove wherever they appear, on top of the generic patterns.
 */
export function createLogger(level: string, destination?: pino.DestinationStream, secrets: readonly string[] = []): Logger {
  return pino(
    {
      level,
      messageKey: 'message',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      // Errors are serialised (and scrubbed) by formatters.log, which runs first.
      serializers: { err: (err: unknown) => err },
      formatters: {
        level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT' }),
        log: (fields) => scrubLogFields(fields, secrets) as Record<string, unknown>,
      },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((arg) => (typeof arg === 'string' ? scrubText(arg, secrets) : arg)) as Parameters<typeof method>);
        },
      },
    },
    destination,
  );
}

/** The configured secrets the log must never show. */
export function configuredSecrets(config: Config): string[] {
  return config.tasks.kind === 'cloud' && config.tasks.secret ? [config.tasks.secret] : [];
}

/** The Cloud Logging trace name for a request's `X-Cloud-Trace-Context`, if it has one. */
export function traceOf(header: string | undefined, project: string | undefined): string | undefined {
  const traceId = header?.split('/')[0]?.trim();
  if (!traceId || !/^[0-9a-fA-F]{1,64}$/.test(traceId)) return undefined;
  return project ? `projects/${project}/traces/${traceId}` : traceId;
}

/**
 * One log line per request, written when the response is finished (or the client went
 * away), in Cloud Logging's `httpRequest` shape, with the registry fields the router set
 * (read only then). Returns the request's logger (with its trace, if any). Used by the
 * Express middleware below and by the fast entry in front of Express (fast-entry.ts).
 */
export function startRequestLog(
  log: Logger,
  project: string | undefined,
  req: IncomingMessage,
  res: ServerResponse,
  fields: RequestLogFields,
  remoteIp: () => string | undefined,
): Logger {
  const started = process.hrtime.bigint();
  // Express's routers rewrite req.url on the way; the line names what the client asked for.
  const url = req.url ?? '';
  const header = req.headers['x-cloud-trace-context'];
  const trace = traceOf(typeof header === 'string' ? header : undefined, project);
  const requestLog = trace ? log.child({ 'logging.googleapis.com/trace': trace }) : log;
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
        requestUrl: url,
        status,
        responseSize: String(bytes),
        userAgent: req.headers['user-agent'],
        remoteIp: remoteIp(),
        latency: `${seconds.toFixed(3)}s`,
        protocol: `HTTP/${req.httpVersion}`,
      },
    };
    const level = status >= 500 ? 'error' : 'info';
    requestLog[level](line, `${req.method} ${url} ${status}`);
  };
  res.on('finish', done);
  res.on('close', done);
  return requestLog;
}

/** The request log as Express middleware: `res.locals.fields` and `res.locals.log` for the handlers after it. */
export function requestLogger(log: Logger, project: string | undefined) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const fields: RequestLogFields = {};
    res.locals.fields = fields;
    res.locals.log = startRequestLog(log, project, req, res, fields, () => req.ip);
    next();
  };
}
