import express, { type Router } from 'express';
import { RegistryError } from '../registry/errors.js';
import type { BuildFacility } from './facility.js';

/** `GET /_builds/<id>/log` on any host: a build's log as plain text, live while it runs. */
export function buildLogRouter(builds: BuildFacility): Router {
  const router = express.Router();
  router.get('/_builds/:id/log', (req, res, next) => {
    const id = req.params.id as string;
    if (!/^[0-9a-f]{32}$/.test(id)) {
      next(new RegistryError('NAME_INVALID', `${id} is not a build id`, { status: 404 }));
      return;
    }
    builds.logText(id).then((text) => {
      if (text === undefined) throw new RegistryError('NAME_UNKNOWN', `no log for build ${id}: it has not run here, or its log has expired`, { status: 404 });
      res.setHeader('Cache-Control', 'no-store');
      res.type('text/plain; charset=utf-8').send(text);
    }).catch(next);
  });
  return router;
}
