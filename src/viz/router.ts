import type { Request, Response, NextFunction, RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Generator } from '../generators/generator.js';
import type { Platform } from '../oci/types.js';
import { parsePlatform } from '../registry/platform.js';
import { serviceFromHost } from '../registry/services.js';
import type { RequestLogFields } from '../registry/router.js';
import type { ContentStore } from '../content/store.js';
import { toDot, withDrawnFonts } from './dot.js';
import { formatPlatform } from './format.js';
import { buildGraph, resolveImages, type ImageGraph } from './graph.js';
import { VIZ_SERVICE, VizHost, notARegistry } from './host.js';
import { loadedGenerator } from '../generators/lazy.js';
import { ClientGone, VizBusyError, VizLimitError } from './limits.js';
import { OwnImages, ownRegistryNames } from './own-images.js';
import { EXAMPLE_IMAGES, vizPage } from './page.js';
import { TooManyImagesError, parseImageList } from './references.js';
import { inlineSvg } from './render.js';
import type { ResolveContext } from './source.js';

const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** A request viz cannot draw at all; answered 400 with the message. */
class BadVizRequest extends Error {}

/** The status and message of a request viz refuses; undefined for an unexpected error. */
function refusal(err: unknown): { status: number; message: string; retryAfter?: number } | undefined {
  if (err instanceof BadVizRequest) return { status: 400, message: err.message };
  if (err instanceof VizLimitError) return { status: 422, message: err.message };
  if (err instanceof VizBusyError) return { status: 503, message: err.message, retryAfter: 30 };
  return undefined;
}

export interface VizRouterOptions {
  generators: ReadonlyMap<string, Generator>;
  domain: string;
  /** Where this server's own images are read from, in-process. */
  store: ContentStore;
}

/**
 * The viz host's page and API, in host form (`viz.<domain>/`, `/graph.svg`, `/graph.json`)
 * and path form (`/viz`, `/viz/graph.svg`, …) on the bare domain or localhost. Mounted
 * before the registry so that `/v2/` requests for viz get a clear refusal instead of
 * content that other hosts put in the shared store. Passes everything else on.
 */
export function vizRouter({ generators, domain, store }: VizRouterOptions): RequestHandler {
  const host = generators.get(VIZ_SERVICE);
  if (!host) return (_req, _res, next) => next();

  return async (req: Request, res: Response, next: NextFunction) => {
    const hostService = serviceFromHost(req.headers.host, domain);
    let base: string;
    let route: string;
    if (hostService === VIZ_SERVICE) {
      base = '';
      route = req.path;
      if (route === '/v2' || route.startsWith('/v2/')) return refuse(res, next);
    } else if (hostService !== undefined) {
      return next();
    } else if (req.path === '/viz' || req.path.startsWith('/viz/')) {
      base = '/viz';
      route = req.path.slice(base.length) || '/';
    } else if (req.path === '/v2/viz' || req.path.startsWith('/v2/viz/')) {
      return refuse(res, next);
    } else {
      return next();
    }
    if (route !== '/' && route !== '/graph.svg' && route !== '/graph.json') return next();
    logAsViz(res);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.status(405).setHeader('Allow', 'GET, HEAD').type('text/plain').send(`${req.method} is not supported here: the viz page and API answer GET\n`);
      return;
    }
    const context = requestContext(req, res);
    try {
      // The host's module (and Graphviz's worker pool) is loaded on its first page or drawing.
      const viz = await loadedGenerator(host);
      if (!(viz instanceof VizHost)) return next();
      if (route === '/') await page(viz, req, res, base, context);
      else await api(viz, req, res, route === '/graph.svg' ? 'svg' : 'json', context);
    } catch (err) {
      // The client left: its work is abandoned and there is no one to answer.
      if (err instanceof ClientGone) return;
      throw err;
    }
  };

  /** This server's images for references that name it; a signal that aborts when the client leaves. */
  function requestContext(req: Request, res: Response): ResolveContext & { signal: AbortSignal } {
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const log: Logger = res.locals.log;
    return {
      signal: gone.signal,
      own: { names: ownRegistryNames({ host: req.headers.host, localPort: req.socket.localPort }, domain), reader: new OwnImages(generators, store, domain, log, gone.signal) },
    };
  }

  function refuse(res: Response, next: NextFunction): void {
    logAsViz(res);
    next(notARegistry(domain));
  }
}

/** So the request log line names the host, as the registry router does for the others. */
function logAsViz(res: Response): void {
  const fields = res.locals.fields as RequestLogFields | undefined;
  if (fields) fields.service = VIZ_SERVICE;
}

function queryValues(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return [];
}

function platformOf(req: Request): Platform {
  const text = queryValues(req.query.platform)[0]?.trim();
  if (!text) return DEFAULT_PLATFORM;
  const platform = parsePlatform(text);
  if (!platform || !/^[a-z0-9._-]+(\/[a-z0-9._-]+){1,2}$/i.test(text)) throw new BadVizRequest(`platform ${JSON.stringify(text)} is not os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8`);
  return platform;
}

/** The references of a request: `image=` parameters for scripts, `images=` (the text area) for the page. */
function referencesOf(req: Request): string[] {
  try {
    return parseImageList([...queryValues(req.query.image), ...queryValues(req.query.images)]);
  } catch (err) {
    if (err instanceof TooManyImagesError) throw new BadVizRequest(err.message);
    throw err;
  }
}

async function draw(viz: VizHost, references: string[], platform: Platform, context: ResolveContext): Promise<ImageGraph> {
  return buildGraph(await resolveImages(viz.source, references, platform, viz.resolveOptions, context), platform);
}

async function drawSvg(viz: VizHost, dot: string, signal: AbortSignal): Promise<string> {
  return withDrawnFonts(await viz.renderer.render(dot, signal));
}

async function page(viz: VizHost, req: Request, res: Response, base: string, context: ResolveContext & { signal: AbortSignal }): Promise<void> {
  // The page reflects its input: no scripts, no outside resources.
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'");
  const submitted = req.query.images !== undefined || req.query.image !== undefined;
  const text = submitted ? [...queryValues(req.query.image), ...queryValues(req.query.images)].join('\n') : EXAMPLE_IMAGES;
  const platformText = queryValues(req.query.platform)[0]?.trim() || formatPlatform(DEFAULT_PLATFORM);
  if (!submitted) {
    res.type('html').send(vizPage({ base, images: text, platform: platformText }));
    return;
  }
  try {
    const platform = platformOf(req);
    const references = referencesOf(req);
    if (references.length === 0) throw new BadVizRequest('no image references: write at least one, one per line');
    const graph = await draw(viz, references, platform, context);
    const svg = inlineSvg(await drawSvg(viz, toDot(graph), context.signal));
    res.type('html').send(vizPage({ base, images: text, platform: platformText, graph, svg }));
  } catch (err) {
    const refused = refusal(err);
    if (!refused) throw err;
    if (refused.retryAfter) res.setHeader('Retry-After', String(refused.retryAfter));
    res.status(refused.status).type('html').send(vizPage({ base, images: text, platform: platformText, problem: refused.message }));
  }
}

async function api(viz: VizHost, req: Request, res: Response, format: 'svg' | 'json', context: ResolveContext & { signal: AbortSignal }): Promise<void> {
  let body: string;
  try {
    const platform = platformOf(req);
    const references = referencesOf(req);
    if (references.length === 0) throw new BadVizRequest('no images: give one or more image= parameters, e.g. ?image=busybox&image=alpine');
    const graph = await draw(viz, references, platform, context);
    body = format === 'json' ? JSON.stringify(graph, null, 2) + '\n' : await drawSvg(viz, toDot(graph, { errorsInLabel: true }), context.signal);
  } catch (err) {
    const refused = refusal(err);
    if (!refused) throw err;
    if (refused.retryAfter) res.setHeader('Retry-After', String(refused.retryAfter));
    res.status(refused.status).type('text/plain').send(`${refused.message}\n`);
    return;
  }
  // A tag can move at any time: never cache an answer made from tags.
  res.setHeader('Cache-Control', 'no-store');
  if (format === 'json') {
    res.type('application/json').send(body);
    return;
  }
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
  res.type('image/svg+xml').send(body);
}
