import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.js';
import type { Generator } from '../generators/generator.js';
import { ObjectNotFound } from '../storage/backend.js';
import { isSendable } from '../storage/file-range-stream.js';
import { RegistryError } from './errors.js';
import { checkDigest } from './names.js';
import { parseRange } from './range.js';
import type { RequestLogFields } from './router.js';
import type { ServiceTarget } from './services.js';

export interface BlobRequest {
  store: ContentStore;
  generator: Generator;
  target: ServiceTarget;
  reference: string;
  log: Logger;
  /** The request log line's fields: the Range header is added to them. */
  fields: RequestLogFields;
  /**
   * Answers with a redirect to `url` (Express's res.redirect). Without it a blob the store
   * could hand out by URL is streamed instead.
   */
  redirect?: (url: string) => void;
}

/**
 * Blob GET and HEAD, written against node:http's request and response alone so the
 * Express router and the fast entry in front of it (server/fast-entry.ts) give the same
 * answer byte for byte. Errors are thrown as RegistryErrors for the caller to render.
 */
export async function serveBlob(req: IncomingMessage, res: ServerResponse, request: BlobRequest): Promise<void> {
  const { store, generator, target, log, fields } = request;
  const digest = checkDigest(request.reference);
  // Only under a repository whose images reference it (see findManifest).
  const link = generator.storeless ? undefined : await store.links.find(generator.service, target.repository, digest);
  const stored = link && (await store.statBlob(digest));
  const source = stored
    ? { size: stored.size, open: (range?: { start: number; end: number }) => store.readBlob(digest, range) }
    : await generator.fetchBlob?.(target.repository, digest, log, link);
  if (!source) throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} is not known to ${generator.service}`, { detail: { digest } });

  res.setHeader('Docker-Content-Digest', digest);
  res.setHeader('ETag', `"${digest}"`);
  res.setHeader('Cache-Control', 'max-age=31536000, immutable');
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Content-Type', 'application/octet-stream');
  if (req.method === 'HEAD') {
    source.abandon?.();
    res.setHeader('Content-Length', source.size);
    res.statusCode = 200;
    res.end();
    return;
  }
  // Redirect only to an object that exists: `stored` is the store's own answer.
  if (stored && request.redirect) {
    const url = await store.blobURL(digest);
    if (url) {
      res.removeHeader('Content-Type');
      request.redirect(url);
      return;
    }
  }
  if (req.headers.range) fields.range = req.headers.range;
  const range = parseRange(req.headers.range, source.size);
  if (range.kind === 'unsatisfiable') {
    source.abandon?.();
    throw new RegistryError('RANGE_INVALID', `range ${req.headers.range} is outside the blob's ${source.size} bytes`, {
      headers: { 'Content-Range': `bytes */${source.size}` },
    });
  }
  let body: Readable;
  try {
    body = await source.open(range.kind === 'range' ? range.range : undefined);
  } catch (err) {
    // Deleted between stat and read (garbage collection): the client may simply retry.
    if (err instanceof ObjectNotFound) throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} is no longer available`);
    throw err;
  }
  if (range.kind === 'range') {
    const { start, end } = range.range;
    res.statusCode = 206;
    res.setHeader('Content-Range', `bytes ${start}-${end}/${source.size}`);
    res.setHeader('Content-Length', end - start + 1);
  } else {
    res.statusCode = 200;
    res.setHeader('Content-Length', source.size);
  }
  try {
    // A stored file sends itself without a buffer per chunk (see FileRangeStream).
    if (isSendable(body)) await body.sendTo(res);
    else await pipeline(body, res);
  } catch (err) {
    // The client went away or the source failed mid-stream: headers are gone, so the
    // connection is cut and the client sees a short body (and a digest mismatch).
    log.warn({ err, digest }, 'blob stream ended early');
    res.destroy();
  }
}
