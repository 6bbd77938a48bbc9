import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { RegistryError } from '../registry/errors.js';
import { sendError } from './error-response.js';
import { answerBaseRoute, isBaseRoute, type BaseRouteOptions } from './fast-entry.js';

/**
 * The server's request listener while it starts. The server listens first; its store's
 * probe runs, and Express, the content store, the hosts and the task queue load (about
 * two thirds of a cold start's JavaScript), after that. Meanwhile the base route
 * (`GET /v2/`, what clients and start checks ask first, which needs no store) is answered
 * here, and every other request waits for the full entry and is then handed to it as if
 * just arrived. The same gate holds, behind the fast entry, what only Express answers
 * while Express is still loading (assemble.ts).
 */
export interface StartGate {
  readonly listener: RequestListener;
  /** The server is ready: waiting requests go to `entry`, and so does everything from now on. */
  open(entry: RequestListener): void;
  /** The server could not start: waiting and later requests get a 503 (the process is about to exit). */
  fail(): void;
}

export function startGate(options: BaseRouteOptions): StartGate {
  let entry: RequestListener | undefined;
  let failed = false;
  const waiting: Array<[IncomingMessage, ServerResponse]> = [];

  const unavailable = (req: IncomingMessage, res: ServerResponse) =>
    sendError(new RegistryError('UNAVAILABLE', 'kontain could not start; its log says why'), req, res, options.log, req.url ?? '');

  return {
    listener: (req, res) => {
      if (entry) entry(req, res);
      else if (failed) unavailable(req, res);
      else if (isBaseRoute(req, options.domain)) answerBaseRoute(req, res, options);
      else waiting.push([req, res]);
    },
    open(ready) {
      entry = ready;
      for (const [req, res] of waiting.splice(0)) ready(req, res);
    },
    fail() {
      failed = true;
      for (const [req, res] of waiting.splice(0)) unavailable(req, res);
    },
  };
}
