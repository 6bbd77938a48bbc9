import type { Request, Response, NextFunction, RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.js';
import type { Generator } from '../generators/generator.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { RegistryError } from './errors.js';
import { checkDigest, checkName } from './names.js';
import { parseRegistryPath } from './paths.js';
import { resolveService, type ServiceTarget } from './services.js';
import { API_VERSION_HEADER, ManifestServer, sendBytes } from './manifests.js';
import { serveBlob } from './blobs.js';
import { pageTags } from './tags.js';

export interface RegistryOptions {
  store: ContentStore;
  generators: ReadonlyMap<string, Generator>;
  domain: string;
  /** Told how long each successful generator.manifest call took (metrics). */
  onGeneration?: (service: string, seconds: number) => void;
}

/** Fields the request logger reports for registry requests. */
export interface RequestLogFields {
  service?: string;
  repository?: string;
  reference?: string;
  /** The Range header of a blob request: which parts lazy pullers (eStargz) ask for. */
  range?: string;
}

const PUSH_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const EMPTY_INDEX = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }));

/** The distribution API (pull side) over a content store and a set of generators. */
export function registryRouter(options: RegistryOptions): RequestHandler {
  const { store, generators, domain } = options;
  const services = new Set(generators.keys());
  const manifests = new ManifestServer({ store, onGeneration: options.onGeneration });

  async function handle(req: Request, res: Response): Promise<void> {
    res.setHeader(...API_VERSION_HEADER);
    const path = parseRegistryPath(req.path);
    const log: Logger = res.locals.log;
    const fields: RequestLogFields = res.locals.fields;

    if (PUSH_METHODS.has(req.method)) {
      labelService(req, path, fields, domain, services);
      throw new RegistryError('UNSUPPORTED', `${req.method} is not supported: kontain is a read-only registry that makes images when they are pulled`);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      throw new RegistryError('UNSUPPORTED', `${req.method} is not supported`);
    }
    if (path.kind === 'base') {
      sendBytes(res, req, 200, Buffer.from('{}'), 'application/json');
      return;
    }
    if (path.kind === 'catalog') {
      throw new RegistryError('UNSUPPORTED', 'the catalog is not available: images exist only once they are asked for', { status: 404 });
    }
    if (path.kind === 'unknown') {
      throw new RegistryError('NAME_UNKNOWN', `no registry API route for ${req.path}`, { status: 404 });
    }
    checkName(path.name);
    const target = resolveService(req.headers.host, domain, path.name, services);
    const generator = generators.get(target.service)!;
    fields.service = target.service;
    fields.repository = target.repository;

    switch (path.kind) {
      case 'upload':
        throw new RegistryError('UNSUPPORTED', 'uploads are not supported: kontain is a read-only registry');
      case 'manifest':
        fields.reference = path.reference;
        return manifests.serve(req, res, { generator, target, reference: path.reference, log, baseUrl: `${req.protocol}://${req.get('host') ?? 'localhost'}` });
      case 'blob':
        fields.reference = path.digest;
        return serveBlob(req, res, { store, generator, target, reference: path.digest, log, fields, redirect: (url) => res.redirect(307, url) });
      case 'tags':
        return serveTags(req, res, generator, target, path.name, log);
      case 'referrers':
        fields.reference = path.digest;
        return serveReferrers(req, res, generator, target, path.digest, log);
    }
  }

  async function serveTags(req: Request, res: Response, generator: Generator, target: ServiceTarget, name: string, log: Logger): Promise<void> {
    const n = parsePageSize(req.query.n);
    const last = typeof req.query.last === 'string' ? req.query.last : undefined;
    // Hosts that make any tag on request have no list to give: an empty one (not an
    // error) keeps `skopeo inspect` and `crane ls` working.
    const source = generator.tags && n !== 0 ? await generator.tags(target.repository, { n, last }, log) : { tags: [] };
    const page = pageTags(source.tags, { n, last }, 'next' in source && source.next !== undefined);
    if (page.next !== undefined && n !== undefined) {
      const params = new URLSearchParams({ n: String(n), last: page.next });
      res.setHeader('Link', `</v2/${name}/tags/list?${params}>; rel="next"`);
    }
    sendBytes(res, req, 200, Buffer.from(JSON.stringify({ name, tags: page.tags })), 'application/json');
  }

  /**
   * Any well-formed digest has a referrers index, empty when nothing refers to it (the
   * spec forbids 404 here). `artifactType` is applied by kontain, whatever the source did.
   */
  async function serveReferrers(req: Request, res: Response, generator: Generator, target: ServiceTarget, reference: string, log: Logger): Promise<void> {
    const digest = checkDigest(reference);
    const artifactType = typeof req.query.artifactType === 'string' ? req.query.artifactType : undefined;
    const known = await generator.referrers?.(target.repository, digest, log);
    if (artifactType === undefined) {
      sendBytes(res, req, 200, known?.bytes ?? EMPTY_INDEX, MediaType.ociIndex);
      return;
    }
    const index = JSON.parse((known?.bytes ?? EMPTY_INDEX).toString('utf8')) as ImageIndex;
    const manifests = (index.manifests ?? []).filter((entry) => entry.artifactType === artifactType);
    res.setHeader('OCI-Filters-Applied', 'artifactType');
    sendBytes(res, req, 200, Buffer.from(JSON.stringify({ ...index, manifests })), MediaType.ociIndex);
  }

  return (req: Request, res: Response, next: NextFunction) => {
    if (!req.path.startsWith('/v2/') && req.path !== '/v2') {
      next();
      return;
    }
    handle(req, res).catch((err: unknown) => next(err));
  };
}

/** Names the service of a request refused before routing (pushes), for the request log and metrics. */
function labelService(req: Request, path: ReturnType<typeof parseRegistryPath>, fields: RequestLogFields, domain: string, services: ReadonlySet<string>): void {
  if (!('name' in path)) return;
  try {
    const target = resolveService(req.headers.host, domain, path.name, services);
    fields.service = target.service;
    fields.repository = target.repository;
  } catch {
    // Not a service: the push is refused all the same.
  }
}

function parsePageSize(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const value = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(value)) {
    throw new RegistryError('PAGINATION_NUMBER_INVALID', `n=${String(raw)} is not a non-negative integer`);
  }
  return value;
}

export type { Descriptor };
