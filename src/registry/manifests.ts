import { validateHeaderValue, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.js';
import type { Generator } from '../generators/generator.js';
import { isIndexType } from '../oci/mediatypes.js';
import type { ImageIndex, StoredManifest } from '../oci/types.js';
import { AcceptedTypes } from './accept.js';
import { RegistryError } from './errors.js';
import { parseReference, type Reference } from './names.js';
import { selectPlatform } from './platform.js';
import type { ServiceTarget } from './services.js';

/** The header every registry answer carries (the router and the fast entry set it first). */
export const API_VERSION_HEADER = ['Docker-Distribution-API-Version', 'registry/2.0'] as const;

/**
 * A manifest's 200 answer, made once per manifest: the headers in the order serve()
 * sets them (API_VERSION_HEADER first), as writeHead's flat list, and the body.
 */
export interface ReadyAnswer {
  headers: readonly string[];
  body: Buffer;
}

/** A ready answer, and until when (performance.now() time) its host vouches for it (ReadyManifest.freshUntil). */
export interface AnswerNow {
  answer: ReadyAnswer;
  freshUntil: number;
}

export interface ManifestServerOptions {
  store: ContentStore;
  /** Told how long each successful generator.manifest call took (metrics). */
  onGeneration?: (service: string, seconds: number) => void;
}

/** What a manifest request needs beyond the request itself, whichever path (Express or the fast entry) it came by. */
export interface ManifestRequest {
  generator: Generator;
  target: ServiceTarget;
  reference: string;
  log: Logger;
  /** The URL this server is reached at, for hosts that name themselves (`http://host`). */
  baseUrl: string;
}

/**
 * Manifest GET and HEAD, written against node:http's request and response alone so the
 * Express router and the fast entry in front of it (server/fast-entry.ts) give the same
 * answer byte for byte. Errors are thrown as RegistryErrors for the caller to render.
 */
export class ManifestServer {
  /** Ready answers by manifest, kept as long as the host keeps the manifest; null for none. */
  private readonly ready = new WeakMap<StoredManifest, ReadyAnswer | null>();

  constructor(private readonly options: ManifestServerOptions) {}

  /**
   * serve()'s 200 answer when the generator holds the manifest ready (manifestNow) and no
   * decision needs more than that: a storeless host, a tag whose manifest the client
   * accepts as it is, no If-None-Match. Undefined otherwise, and serve() answers. `ref` is
   * the request's reference, read by the caller; `headers` its Accept and If-None-Match.
   * Counts as serve() does for the generation metric.
   */
  answerNow(headers: Pick<IncomingHttpHeaders, 'accept' | 'if-none-match'>, generator: Generator, target: ServiceTarget, ref: Reference): AnswerNow | undefined {
    if (!generator.storeless || !generator.manifestNow || headers['if-none-match'] !== undefined) return undefined;
    const started = performance.now();
    const ready = generator.manifestNow(target.repository, ref);
    if (!ready) return undefined;
    const { manifest } = ready;
    if (ref.tag !== undefined) {
      if (!AcceptedTypes.fromHeaders(headers.accept).accepts(manifest.mediaType)) return undefined;
      this.options.onGeneration?.(generator.service, (performance.now() - started) / 1000);
    }
    let answer = this.ready.get(manifest);
    if (answer === undefined) {
      answer = readyAnswer(manifest);
      this.ready.set(manifest, answer);
    }
    return answer ? { answer, freshUntil: ready.freshUntil } : undefined;
  }

  async serve(req: IncomingMessage, res: ServerResponse, request: ManifestRequest): Promise<void> {
    const { generator, target, log } = request;
    const store = this.options.store;
    const ref = parseReference(request.reference);
    const accept = AcceptedTypes.fromHeaders(req.headers.accept);
    let manifest: StoredManifest | undefined;
    if (ref.tag !== undefined) {
      const started = performance.now();
      const gone = clientGone(res);
      const answer = await generator.manifest({
        repository: target.repository,
        tag: ref.tag,
        accept,
        log,
        baseUrl: request.baseUrl,
        get signal() {
          return gone();
        },
      });
      this.options.onGeneration?.(generator.service, (performance.now() - started) / 1000);
      manifest = 'bytes' in answer ? answer : await store.getManifest(answer.digest);
      if (!manifest) throw new Error(`${generator.service} returned ${answer.digest}, which is not in the store`);
      if (!generator.storeless) await store.links.addManifest(generator.service, target.repository, manifest);
      manifest = await this.negotiate(manifest, accept, ref.tag, generator, target, log);
    } else {
      // By digest the stored bytes are the answer whatever Accept says, as distribution
      // does: only a tag is negotiated, since another form would have another digest.
      manifest = await this.find(generator, target, ref.digest, log);
      if (!manifest) throw new RegistryError('MANIFEST_UNKNOWN', `manifest ${ref.digest} is not known to ${generator.service}`, { detail: { digest: ref.digest } });
    }
    res.setHeader('Docker-Content-Digest', manifest.digest);
    res.setHeader('ETag', `"${manifest.digest}"`);
    if (req.headers['if-none-match'] === `"${manifest.digest}"`) {
      res.statusCode = 304;
      res.end();
      return;
    }
    sendBytes(res, req, 200, manifest.bytes, manifest.mediaType);
  }

  /**
   * Serves what the client accepts: an index goes to a client that only takes single
   * manifests as its linux/amd64 (or only) child, never converted between formats.
   */
  private async negotiate(manifest: StoredManifest, accept: AcceptedTypes, tag: string, generator: Generator, target: ServiceTarget, log: Logger): Promise<StoredManifest> {
    if (accept.accepts(manifest.mediaType)) return manifest;
    if (isIndexType(manifest.mediaType)) {
      const index = JSON.parse(manifest.bytes.toString('utf8')) as ImageIndex;
      const child = selectPlatform(index.manifests, { os: 'linux', architecture: 'amd64' });
      if (child && accept.accepts(child.mediaType)) {
        const childManifest = await this.find(generator, target, child.digest, log);
        if (childManifest) return childManifest;
      }
    }
    throw new RegistryError('MANIFEST_UNKNOWN', `${tag} is ${manifest.mediaType}, and the request's Accept header takes none of it or its platform images`);
  }

  /**
   * A manifest by digest, only under a repository an image served there references it from
   * (as a registry with access control answers); a generator that fetches on demand (mirror)
   * may vouch for one itself. What it references becomes servable there in turn.
   */
  async find(generator: Generator, target: ServiceTarget, digest: string, log: Logger): Promise<StoredManifest | undefined> {
    // A storeless host (static) answers for its own names alone.
    if (generator.storeless) return generator.fetchManifest?.(target.repository, digest, log);
    const store = this.options.store;
    const linked = await store.links.find(generator.service, target.repository, digest);
    const manifest = (linked && (await store.getManifest(digest))) || (await generator.fetchManifest?.(target.repository, digest, log));
    if (manifest) await store.links.addManifest(generator.service, target.repository, manifest);
    return manifest;
  }
}

/**
 * Null when the media type is no valid header value (a host's manifests are not trusted
 * that far; writeHead would throw in the request listener): serve() answers those.
 */
function readyAnswer(manifest: StoredManifest): ReadyAnswer | null {
  try {
    validateHeaderValue('Content-Type', manifest.mediaType);
  } catch {
    return null;
  }
  const headers = [
    ...API_VERSION_HEADER,
    'Docker-Content-Digest', manifest.digest,
    'ETag', `"${manifest.digest}"`,
    'Content-Type', manifest.mediaType,
    'Content-Length', String(manifest.bytes.length),
  ];
  return { headers, body: manifest.bytes };
}

/** Small bodies: exact bytes, exact type, length on HEAD too. */
export function sendBytes(res: ServerResponse, req: IncomingMessage, status: number, bytes: Buffer, contentType: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', bytes.length);
  if (req.method === 'HEAD') res.end();
  else res.end(bytes);
}

/**
 * The signal that aborts when the response's connection closes before the response has
 * been sent, made when a generator first asks for it: most tags are answered from a cache
 * without ever looking, and an AbortController per request was a measurable share of a
 * cached answer's time.
 */
export function clientGone(res: ServerResponse): () => AbortSignal {
  let controller: AbortController | undefined;
  let gone = false;
  const reason = () => new RegistryError('UNAVAILABLE', 'the client closed the connection');
  res.once('close', () => {
    if (res.writableFinished) return;
    gone = true;
    controller?.abort(reason());
  });
  return () => {
    if (!controller) {
      controller = new AbortController();
      if (gone) controller.abort(reason());
    }
    return controller.signal;
  };
}
