import type { IncomingHttpHeaders, IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.js';
import type { Generator } from '../generators/generator.js';
import { serveBlob } from '../registry/blobs.js';
import { API_VERSION_HEADER, sendBytes, type AnswerNow, type ManifestServer, type ReadyAnswer } from '../registry/manifests.js';
import { checkName, parseReference, type Reference } from '../registry/names.js';
import { parseRegistryPath } from '../registry/paths.js';
import type { RequestLogFields } from '../registry/router.js';
import { resolveService, serviceFromHost, type ServiceTarget } from '../registry/services.js';
import { sendError } from './error-response.js';
import { BoundedMap } from '../util/bounded-map.js';
import { VIZ_SERVICE } from '../viz/host.js';
import type { RememberedAnswers } from './connection-entry.js';
import { clientIp, requestProtocol } from './forwarded.js';
import { startRequestLog } from './logging.js';
import { NO_SERVICE, type Metrics } from './metrics.js';

/** What answering the base route needs: the start gate (start-gate.ts) answers it before the rest is loaded. */
export interface BaseRouteOptions {
  domain: string;
  /** Google Cloud project, for the log's trace names. */
  project?: string;
  log: Logger;
  metrics: Metrics;
}

export interface FastEntryOptions extends BaseRouteOptions {
  generators: ReadonlyMap<string, Generator>;
  manifests: ManifestServer;
  store: ContentStore;
}

/** Hosts whose `/v2/` requests only Express answers: viz refuses them in its own router. */
const EXPRESS_ONLY = new Set([VIZ_SERVICE]);
/** Characters of a manifest path kontain can serve; anything else (odd encodings, fragments) is left to Express. */
const PLAIN_PATH = /^\/v2\/[A-Za-z0-9._\-/:%@+~]+$/;
/**
 * Manifest routes read before, by URL: pulls repeat the same few, and reading one again
 * (decoding, the route and name patterns) was a measurable share of a ready answer. Blob
 * routes are read every time: each blob URL is asked for about once per pull, its bytes
 * cost far more than the reading, and kept they would push manifest routes out. Keyed
 * by the URL alone, which is cheaper to look up than URL and Host together; a route holds
 * the Host it was read for, and another Host on the same URL reads its own in its place.
 */
export const KEPT_ROUTES = 1024;
/** Host and URL together, at most, of a kept route: both are the client's and held with it. */
const MAX_KEPT_KEY = 512;
/**
 * A kept route remembers its last ready answer only up to this size, so remembered
 * answers hold at most KEPT_ROUTES times this (16 MiB); a manifest is mostly a few KiB.
 */
export const MAX_REMEMBERED_BYTES = 16 * 1024;
/** The longest Accept line a remembered answer is kept with (as AcceptedTypes keeps them). */
const MAX_REMEMBERED_ACCEPT = 1024;

/** A manifest or static blob request the entry answers, as read from its URL and Host. */
interface EntryRoute {
  /** A manifest, or a blob of a storeless host (a static tree's file: no redirect to decide). */
  kind: 'manifest' | 'blob';
  /** The Host header the route was read for. */
  host: string | undefined;
  target: ServiceTarget;
  generator: Generator;
  reference: string;
  /** `reference` read, or undefined when it is no valid tag or digest (serve() says why). */
  parsed?: Reference;
  /**
   * The route's last ready answer and the Accept line it was given for, repeated to
   * requests with the same line until the host's vouching for it runs out (freshUntil):
   * the answer ManifestServer.answerNow would give again, for half of what the entry
   * added to node:http's own work (callgrind, per static manifest request: 5.6k
   * instructions over a bare node:http server's 79k, against 12.3k).
   */
  remembered?: { accept: string | undefined; answer: ReadyAnswer; freshUntil: number };
}

/** The base route's answer: what answerBaseRoute writes, for the connection entry. */
const BASE_ANSWER: ReadyAnswer = { headers: [...API_VERSION_HEADER, 'Content-Type', 'application/json', 'Content-Length', '2'], body: Buffer.from('{}') };

/**
 * `GET`/`HEAD /v2/` (or `/v2`, any query) on a host that serves the registry API: the
 * version check every client starts with, and what a starting server answers first.
 */
export function isBaseRoute(req: IncomingMessage, domain: string): boolean {
  return (req.method === 'GET' || req.method === 'HEAD') && isBaseTarget(req.url ?? '', req.headers.host, domain);
}

function isBaseTarget(url: string, host: string | undefined, domain: string): boolean {
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  if (path !== '/v2/' && path !== '/v2') return false;
  const service = serviceFromHost(host, domain);
  return service === undefined || !EXPRESS_ONLY.has(service);
}

/** The base route's answer, as the registry router gives it: `{}`, with the request log line and metrics. */
export function answerBaseRoute(req: IncomingMessage, res: ServerResponse, { log, project, metrics }: BaseRouteOptions): void {
  const fields: RequestLogFields = {};
  startRequestLog(log, project, req, res, fields, () => clientIp(req));
  metrics.track(res, () => fields);
  res.setHeader(...API_VERSION_HEADER);
  sendBytes(res, req, 200, BASE_ANSWER.body, 'application/json');
}

/**
 * The server's request entry: the base route, manifest GET and HEAD, and blob GET and
 * HEAD of storeless hosts (a static tree), the requests pulls repeat most, are answered
 * here on node:http; everything else goes to the Express app. Express's routing costs
 * several times what serving a cached manifest does (measured: a bare one-route Express 5
 * app answers about a tenth of node:http's requests per second), and the requests it
 * handles slow the others down: it gives node:http's request and response objects its own
 * prototypes, and node:http's code, having seen both kinds, runs slower for all
 * (bench/static: 20 tag lists before each run of manifest requests took them from 0.88x
 * to 0.72x of a bare node:http server; 5 blob GETs, to 0.76x).
 * The answer is the Express path's own: the same request log line, metrics, links checks,
 * negotiation, headers and error bodies (ManifestServer, serveBlob, startRequestLog,
 * Metrics.track, sendError), and every request this entry does not fully recognise goes
 * to Express.
 */
export interface FastEntry {
  listener: RequestListener;
  /** The answers kept routes remember, for the connection entry (connection-entry.ts). */
  remembered: RememberedAnswers;
}

export function fastEntry(app: RequestListener, options: FastEntryOptions): FastEntry {
  const services = new Set(options.generators.keys());
  const { log, metrics, manifests, project } = options;

  const routes = new BoundedMap<string, EntryRoute>(KEPT_ROUTES);

  /** The manifest (then kept) or static blob route a GET or HEAD names; undefined for any other request. */
  const route = (req: IncomingMessage): EntryRoute | undefined => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return undefined;
    const url = req.url ?? '';
    if (!url.startsWith('/v2/') || !(url.includes('/manifests/') || url.includes('/blobs/'))) return undefined;
    const found = readRoute(req.headers.host, url);
    if (found?.kind === 'manifest' && url.length + (found.host?.length ?? 0) <= MAX_KEPT_KEY) routes.set(url, found);
    return found;
  };

  const readRoute = (host: string | undefined, url: string): EntryRoute | undefined => {
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    if (!PLAIN_PATH.test(path)) return undefined;
    const parsed = parseRegistryPath(path);
    if (parsed.kind !== 'manifest' && parsed.kind !== 'blob') return undefined;
    try {
      // Express answers a bad name or an unknown host with its error; no need to repeat it here.
      checkName(parsed.name);
      const target = resolveService(host, options.domain, parsed.name, services);
      if (EXPRESS_ONLY.has(target.service)) return undefined;
      const generator = options.generators.get(target.service)!;
      if (parsed.kind === 'blob') return generator.storeless ? { kind: 'blob', host, target, generator, reference: parsed.digest } : undefined;
      return { kind: 'manifest', host, target, generator, reference: parsed.reference, parsed: readReference(parsed.reference) };
    } catch {
      return undefined;
    }
  };

  /**
   * A manifest answer made once (ManifestServer.answerNow), written with one call. It is a
   * 200, or a 499 if the client has gone: both logged at info level, so with that level off
   * there is no line to prepare.
   */
  const sendReady = (req: IncomingMessage, res: ServerResponse, ready: ReadyAnswer, target: ServiceTarget, reference: string): void => {
    const body = req.method === 'HEAD' ? undefined : ready.body;
    if (log.isLevelEnabled('info')) {
      const fields: RequestLogFields = { service: target.service, repository: target.repository, reference };
      startRequestLog(log, project, req, res, fields, () => clientIp(req));
    }
    metrics.countAnswer(target.service, res.destroyed ? 499 : 200, body?.length ?? 0);
    res.writeHead(200, ready.headers as string[]);
    res.end(body);
  };

  /**
   * The route's ready answer to a request with these Accept and If-None-Match headers: the
   * remembered one while it is fresh, else ManifestServer.answerNow's (remembered for the
   * next); undefined when serve() has to answer.
   */
  const readyAnswer = (found: EntryRoute, headers: Pick<IncomingHttpHeaders, 'accept' | 'if-none-match'>): ReadyAnswer | undefined => {
    if (headers['if-none-match'] !== undefined || found.parsed === undefined) return undefined;
    const { accept } = headers;
    const remembered = found.remembered;
    if (remembered !== undefined && accept === remembered.accept) {
      const started = performance.now();
      if (started < remembered.freshUntil) {
        // Counted as answerNow counts a tag's ready answer.
        if (found.parsed.tag !== undefined) metrics.observeGeneration(found.generator.service, (performance.now() - started) / 1000);
        return remembered.answer;
      }
      found.remembered = undefined;
    }
    let ready: AnswerNow | undefined;
    try {
      ready = manifests.answerNow(headers, found.generator, found.target, found.parsed);
    } catch {
      // Thrown here it would take the process down; serve() meets it again and answers it.
      return undefined;
    }
    if (ready === undefined) return undefined;
    if (ready.answer.body.length <= MAX_REMEMBERED_BYTES && (accept?.length ?? 0) <= MAX_REMEMBERED_ACCEPT) found.remembered = { accept, ...ready };
    return ready.answer;
  };

  /** A manifest GET or HEAD on a route: its ready answer, else ManifestServer.serve's. */
  const answerManifest = (req: IncomingMessage, res: ServerResponse, found: EntryRoute): void => {
    const ready = readyAnswer(found, req.headers);
    if (ready) {
      sendReady(req, res, ready, found.target, found.reference);
      return;
    }
    const { target, generator, reference } = found;
    const url = req.url!;
    const { requestLog } = startAnswer(req, res, found);
    const baseUrl = `${requestProtocol(req)}://${req.headers.host ?? 'localhost'}`;
    manifests
      .serve(req, res, { generator, target, reference, log: requestLog, baseUrl })
      .catch((err: unknown) => sendError(err, req, res, requestLog, url));
  };

  /** A static blob GET or HEAD: what the Express router answers (serveBlob), without Express. */
  const answerBlob = (req: IncomingMessage, res: ServerResponse, found: EntryRoute): void => {
    const url = req.url!;
    const { requestLog, fields } = startAnswer(req, res, found);
    serveBlob(req, res, { store: options.store, generator: found.generator, target: found.target, reference: found.reference, log: requestLog, fields }).catch(
      (err: unknown) => sendError(err, req, res, requestLog, url),
    );
  };

  /** What Express's middleware and router do before a route's handler, in their order: request log, metrics, the API version header. */
  const startAnswer = (req: IncomingMessage, res: ServerResponse, { target, reference }: EntryRoute) => {
    const fields: RequestLogFields = {};
    const requestLog = startRequestLog(log, project, req, res, fields, () => clientIp(req));
    metrics.track(res, () => fields);
    res.setHeader(...API_VERSION_HEADER);
    fields.service = target.service;
    fields.repository = target.repository;
    fields.reference = reference;
    return { requestLog, fields };
  };

  const answerRoute = (req: IncomingMessage, res: ServerResponse, found: EntryRoute): void => {
    if (found.kind === 'blob') answerBlob(req, res, found);
    else answerManifest(req, res, found);
  };

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' || req.method === 'HEAD') {
      const kept = routes.get(req.url ?? '');
      if (kept !== undefined && kept.host === req.headers.host) {
        answerRoute(req, res, kept);
        return;
      }
    }
    if (isBaseRoute(req, options.domain)) {
      answerBaseRoute(req, res, options);
      return;
    }
    const found = route(req);
    if (found) answerRoute(req, res, found);
    else app(req, res);
  };

  const remembered: RememberedAnswers = {
    take(url, host, accept, head) {
      // A request log line is written from node:http's request and response: those requests are node:http's.
      if (log.isLevelEnabled('info')) return undefined;
      const kept = routes.get(url);
      if (kept !== undefined) {
        const answer = kept.host === host ? readyAnswer(kept, { accept }) : undefined;
        if (answer !== undefined) metrics.countAnswer(kept.target.service, 200, head ? 0 : answer.body.length);
        return answer;
      }
      if (!isBaseTarget(url, host, options.domain)) return undefined;
      metrics.countAnswer(NO_SERVICE, 200, head ? 0 : BASE_ANSWER.body.length);
      return BASE_ANSWER;
    },
  };

  return { listener, remembered };
}

function readReference(reference: string): Reference | undefined {
  try {
    return parseReference(reference);
  } catch {
    return undefined;
  }
}
