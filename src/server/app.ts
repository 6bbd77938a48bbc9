import express, { type Request, type Response, type NextFunction, type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { ContentStore } from '../content/store.js';
import type { Generator } from '../generators/generator.js';
import { RegistryError, reasonPhrase } from '../registry/errors.js';
import { registryRouter } from '../registry/router.js';
import { serviceFromHost } from '../registry/services.js';
import { indexLandingPage, serviceLandingPage } from './landing.js';
import { requestLogger } from './logging.js';
import { createMetrics, type Metrics } from './metrics.js';
import { vizRouter } from '../viz/router.js';
import type { BuildFacility } from '../builds/facility.js';
import { buildLogRouter } from '../builds/log-route.js';

export interface AppDependencies {
  config: Config;
  store: ContentStore;
  generators: ReadonlyMap<string, Generator>;
  log: Logger;
  /** Pass the one the store reports cache lookups to; without it the app makes its own. */
  metrics?: Metrics;
  /** `POST /_tasks/:name`, when tasks arrive over HTTP (Cloud Tasks); the embedded queue needs none. */
  taskEndpoint?: RequestHandler;
  /** Serves each build's log at `/_builds/<id>/log`. */
  builds?: BuildFacility;
}

/** The Express app: request log, health, landing pages, the registry API, error bodies. */
export function createApp({ config, store, generators, log, metrics = createMetrics(), taskEndpoint, builds }: AppDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('trust proxy', true);
  app.use(requestLogger(log, config.project));
  app.use(metrics.middleware);
  // Before every host's routes: task calls may arrive on any host name.
  if (taskEndpoint) app.use(taskEndpoint);

  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok\n');
  });
  app.get('/metrics', metrics.handler);
  if (builds) app.use(buildLogRouter(builds));

  // Before the registry: viz's page and API, and its refusal of registry requests.
  app.use(vizRouter({ generators, domain: config.domain, store }));
  app.use(registryRouter({ store, generators, domain: config.domain, onGeneration: metrics.observeGeneration }));

  app.get('/', (req, res, next) => {
    const service = serviceFromHost(req.headers.host, config.domain);
    const host = req.headers.host ?? `localhost:${config.port}`;
    if (service === undefined) {
      res.type('html').send(indexLandingPage(generators.values(), config.domain, host));
      return;
    }
    const generator = generators.get(service);
    if (!generator) {
      next();
      return;
    }
    res.type('html').send(serviceLandingPage(generator, config.domain, host));
  });

  // Path form of a host's page: localhost:8080/random
  app.get('/:service', (req, res, next) => {
    const generator = generators.get(req.params.service as string);
    if (!generator || serviceFromHost(req.headers.host, config.domain) !== undefined) {
      next();
      return;
    }
    res.type('html').send(serviceLandingPage(generator, config.domain, req.headers.host ?? `localhost:${config.port}`));
  });

  app.use((req: Request, _res: Response, next: NextFunction) => {
    next(new RegistryError('NAME_UNKNOWN', `nothing is served at ${req.method} ${req.path}`, { status: 404 }));
  });

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const known = err instanceof RegistryError ? err : undefined;
    const error = known ?? new RegistryError('UNKNOWN', 'internal error while making this image; the log has the details');
    if (!known) (res.locals.log as Logger ?? log).error({ err }, `unexpected error on ${req.method} ${req.originalUrl}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = Buffer.from(JSON.stringify(error.toJSON()));
    res.status(error.status);
    // containerd resolves tags with HEAD and prints only the status line: say why there too.
    res.statusMessage = reasonPhrase(error.message);
    for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value);
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', body.length);
    if (req.method === 'HEAD') res.end();
    else res.end(body);
  });
  return app;
}
