import express, { type Request, type Response, type NextFunction, type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { ContentStore } from '../content/store.js';
import type { Host } from '../generators/generator.js';
import { RegistryError } from '../registry/errors.js';
import { sendError } from './error-response.js';
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
  generators: ReadonlyMap<string, Host>;
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
    sendError(err, req, res, (res.locals.log as Logger | undefined) ?? log, req.originalUrl);
  });
  return app;
}
