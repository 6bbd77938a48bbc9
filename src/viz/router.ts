import type { Request, Response, NextFunction, RequestHandler } from 'express';
import type { Generator } from '../generators/generator.js';
import type { Platform } from '../oci/types.js';
import { parsePlatform } from '../registry/platform.js';
import { serviceFromHost } from '../registry/services.js';
import type { RequestLogFields } from '../registry/router.js';
import { toDot } from './dot.js';
import { formatPlatform } from './format.js';
import { buildGraph, resolveImages, type ImageGraph } from './graph.js';
import { VIZ_SERVICE, VizHost, notARegistry } from './host.js';
import { EXAMPLE_IMAGES, vizPage } from './page.js';
import { TooManyImagesError, parseImageList } from './references.js';
import { inlineSvg, renderSvg } from './render.js';

const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** A request viz cannot draw at all; answered 400 with the message. */
class BadVizRequest extends Error {}

export interface VizRouterOptions {
  generators: ReadonlyMap<string, Generator>;
  domain: string;
}

/**
 * The viz host's page and API, in host form (`viz.<domain>/`, `/graph.svg`, `/graph.json`)
 * and path form (`/viz`, `/viz/graph.svg`, …) on the bare domain or localhost. Mounted
 * before the registry so that `/v2/` requests for viz get a clear refusal instead of
 * content that other hosts put in the shared store. Passes everything else on.
 */
export function vizRouter({ generators, domain }: VizRouterOptions): RequestHandler {
  const viz = generators.get(VIZ_SERVICE);
  if (!(viz instanceof VizHost)) return (_req, _res, next) => next();

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
    if (route === '/') return page(viz, req, res, base);
    return api(viz, req, res, route === '/graph.svg' ? 'svg' : 'json');
  };

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

async function draw(viz: VizHost, references: string[], platform: Platform): Promise<ImageGraph> {
  return buildGraph(await resolveImages(viz.source, references, platform, viz.resolveOptions), platform);
}

async function page(viz: VizHost, req: Request, res: Response, base: string): Promise<void> {
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
    const graph = await draw(viz, references, platform);
    const svg = inlineSvg(await renderSvg(toDot(graph)));
    res.type('html').send(vizPage({ base, images: text, platform: platformText, graph, svg }));
  } catch (err) {
    if (!(err instanceof BadVizRequest)) throw err;
    res.status(400).type('html').send(vizPage({ base, images: text, platform: platformText, problem: err.message }));
  }
}

async function api(viz: VizHost, req: Request, res: Response, format: 'svg' | 'json'): Promise<void> {
  let graph: ImageGraph;
  try {
    const platform = platformOf(req);
    const references = referencesOf(req);
    if (references.length === 0) throw new BadVizRequest('no images: give one or more image= parameters, e.g. ?image=busybox&image=alpine');
    graph = await draw(viz, references, platform);
  } catch (err) {
    if (!(err instanceof BadVizRequest)) throw err;
    res.status(400).type('text/plain').send(`${err.message}\n`);
    return;
  }
  // A tag can move at any time: never cache an answer made from tags.
  res.setHeader('Cache-Control', 'no-store');
  if (format === 'json') {
    res.type('application/json').send(JSON.stringify(graph, null, 2) + '\n');
    return;
  }
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
  res.type('image/svg+xml').send(await renderSvg(toDot(graph, { errorsInLabel: true })));
}
