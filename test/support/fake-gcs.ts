/**
 * A tiny stand-in for the Google Cloud Storage JSON API, for tests only.
 *
 * Why it exists: no GCS emulator can be installed here, and the GCS backend should be
 * tested through the real `@google-cloud/storage` client rather than a mock of it. So
 * this speaks exactly the subset of the API that client sends for what the backend
 * does (found by logging its requests): object metadata, media download (plain,
 * ranged, public path, V4 signed URL), multipart and resumable uploads with the
 * `ifGenerationMatch` precondition, rewrite/copy, delete and paginated list. Objects
 * live in memory. It answers with GCS-shaped JSON errors and the hash headers the
 * client validates (crc32c, md5), because the client deletes an upload whose
 * returned hashes are missing or wrong.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash, createVerify, randomUUID, type KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';

interface StoredObject {
  bucket: string;
  name: string;
  data: Buffer;
  contentType: string;
  metadata: Record<string, string>;
  generation: number;
  created: Date;
  /** Set by a metadata PATCH; GCS only lets it move forward. */
  customTime?: Date;
}

interface ResumableSession {
  bucket: string;
  name: string;
  contentType: string;
  metadata: Record<string, string>;
  preconditions: URLSearchParams;
  chunks: Buffer[];
  size: number;
}

export interface FakeGcsOptions {
  /** When set, signed-URL GETs must carry a valid V4 signature made with the matching private key. */
  signerPublicKey?: KeyObject | string;
  /** Largest page a list answers with (GCS may return fewer than asked); small values exercise pagination. */
  maxPageSize?: number;
  /** Flip a bit of every multipart upload as it is stored, to test the client's end-to-end hash check. */
  corruptUploads?: boolean;
}

export interface FakeGcs {
  /** Base URL to pass as the client's `apiEndpoint`, e.g. http://127.0.0.1:41234 */
  endpoint: string;
  close(): Promise<void>;
  /** Every request seen, in order (path includes the query string). */
  requests: Array<{ method: string; path: string }>;
  /** Requests that have arrived but are not yet answered or dropped: a client that leaves an upload hanging shows here. */
  inFlight(): number;
  /** Moves an object's creation time `ms` into the past (tests of age-based behaviour). */
  age(bucket: string, name: string, ms: number): void;
  /** Reads and writes objects directly, as another Google service would (the Cloud Build stand-in). */
  read(bucket: string, name: string): Buffer | undefined;
  write(bucket: string, name: string, data: Buffer, contentType?: string): void;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

const PRECONDITION_FAILED = () =>
  new HttpError(412, 'At least one of the pre-conditions you specified did not hold.', 'conditionNotMet');

export async function startFakeGcs(options: FakeGcsOptions = {}): Promise<FakeGcs> {
  const objects = new Map<string, StoredObject>();
  const sessions = new Map<string, ResumableSession>();
  const requests: Array<{ method: string; path: string }> = [];
  let nextGeneration = Date.now() * 1000;
  let endpoint = '';

  const key = (bucket: string, name: string) => `${bucket}\0${name}`;

  function resource(obj: StoredObject) {
    const id = `${obj.bucket}/${obj.name}/${obj.generation}`;
    const encoded = encodeURIComponent(obj.name);
    return {
      kind: 'storage#object',
      id,
      selfLink: `${endpoint}/storage/v1/b/${obj.bucket}/o/${encoded}`,
      mediaLink: `${endpoint}/download/storage/v1/b/${obj.bucket}/o/${encoded}?generation=${obj.generation}&alt=media`,
      name: obj.name,
      bucket: obj.bucket,
      generation: String(obj.generation),
      metageneration: '1',
      contentType: obj.contentType,
      storageClass: 'STANDARD',
      size: String(obj.data.length),
      md5Hash: createHash('md5').update(obj.data).digest('base64'),
      crc32c: crc32cBase64(obj.data),
      etag: Buffer.from(String(obj.generation)).toString('base64'),
      timeCreated: obj.created.toISOString(),
      updated: (obj.customTime ?? obj.created).toISOString(),
      ...(obj.customTime ? { customTime: obj.customTime.toISOString() } : {}),
      ...(Object.keys(obj.metadata).length ? { metadata: obj.metadata } : {}),
    };
  }

  /** GCS preconditions: ifGenerationMatch=0 means "only if absent". */
  function checkPreconditions(query: URLSearchParams, existing: StoredObject | undefined): void {
    const match = query.get('ifGenerationMatch');
    if (match !== null) {
      const current = existing ? existing.generation : 0;
      if (Number(match) !== current) throw PRECONDITION_FAILED();
    }
    const notMatch = query.get('ifGenerationNotMatch');
    if (notMatch !== null && Number(notMatch) === (existing ? existing.generation : 0)) throw PRECONDITION_FAILED();
  }

  /** Creates the object atomically, re-checking preconditions at the moment of creation. */
  function put(bucket: string, name: string, data: Buffer, contentType: string | undefined, metadata: Record<string, string> | undefined, preconditions: URLSearchParams): StoredObject {
    checkPreconditions(preconditions, objects.get(key(bucket, name)));
    const obj: StoredObject = {
      bucket,
      name,
      data,
      contentType: contentType || 'application/octet-stream',
      metadata: metadata ?? {},
      generation: nextGeneration++,
      created: new Date(),
    };
    objects.set(key(bucket, name), obj);
    return obj;
  }

  function getObject(bucket: string, name: string): StoredObject {
    const obj = objects.get(key(bucket, name));
    if (!obj) throw new HttpError(404, `No such object: ${bucket}/${name}`, 'notFound');
    return obj;
  }

  function sendMedia(req: IncomingMessage, res: ServerResponse, obj: StoredObject): void {
    const size = obj.data.length;
    const headers: Record<string, string> = {
      'Content-Type': obj.contentType,
      'Accept-Ranges': 'bytes',
      'x-goog-generation': String(obj.generation),
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-stored-content-length': String(size),
      'x-goog-hash': `crc32c=${crc32cBase64(obj.data)},md5=${createHash('md5').update(obj.data).digest('base64')}`,
    };
    let body = obj.data;
    let status = 200;
    const range = req.headers.range;
    if (range) {
      const parsed = parseRange(range, size);
      if (parsed === 'unsatisfiable') {
        res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Type': 'text/plain' });
        res.end('Requested range not satisfiable');
        return;
      }
      if (parsed) {
        body = obj.data.subarray(parsed.start, parsed.end + 1);
        status = 206;
        headers['Content-Range'] = `bytes ${parsed.start}-${parsed.end}/${size}`;
      }
    }
    headers['Content-Length'] = String(body.length);
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  function list(bucket: string, query: URLSearchParams) {
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter');
    const maxResults = Math.min(Number(query.get('maxResults') ?? 1000) || 1000, options.maxPageSize ?? 1000);
    const pageToken = query.get('pageToken');
    const start = pageToken ? Buffer.from(pageToken, 'base64url').toString('utf8') : '';
    const names = [...objects.values()]
      .filter((o) => o.bucket === bucket && o.name.startsWith(prefix) && o.name > start)
      .map((o) => o.name)
      .sort();
    const items = [];
    const prefixes = new Set<string>();
    let last: string | undefined;
    for (const name of names) {
      if (items.length + prefixes.size >= maxResults) {
        return { kind: 'storage#objects', items, prefixes: [...prefixes], nextPageToken: Buffer.from(last!).toString('base64url') };
      }
      last = name;
      const cut = delimiter ? name.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) prefixes.add(name.slice(0, cut + delimiter!.length));
      else items.push(resource(objects.get(key(bucket, name))!));
    }
    return { kind: 'storage#objects', items, ...(prefixes.size ? { prefixes: [...prefixes] } : {}) };
  }

  /** V4 signed URL check, mirroring the client's canonical request. */
  function checkSignedUrl(req: IncomingMessage, url: URL): void {
    const q = url.searchParams;
    for (const p of ['X-Goog-Algorithm', 'X-Goog-Credential', 'X-Goog-Date', 'X-Goog-Expires', 'X-Goog-SignedHeaders']) {
      if (!q.get(p)) throw new HttpError(400, `missing ${p}`, 'invalid');
    }
    const date = parseGoogDate(q.get('X-Goog-Date')!);
    if (Date.now() > date.getTime() + Number(q.get('X-Goog-Expires')) * 1000) {
      throw new HttpError(400, 'Request has expired', 'ExpiredToken');
    }
    if (!options.signerPublicKey) return;
    const signedHeaders = q.get('X-Goog-SignedHeaders')!.split(';');
    const canonicalHeaders = signedHeaders
      .map((h) => {
        // The client signs the host name without the port.
        const value = h === 'host' ? (req.headers.host ?? '').replace(/:\d+$/, '') : String(req.headers[h] ?? '');
        return `${h}:${value.trim()}\n`;
      })
      .join('');
    const canonicalQuery = [...q.entries()]
      .filter(([k]) => k !== 'X-Goog-Signature')
      .map(([k, v]) => [rfc3986(k), rfc3986(v)])
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    const canonicalRequest = [req.method, url.pathname, canonicalQuery, canonicalHeaders, signedHeaders.join(';'), 'UNSIGNED-PAYLOAD'].join('\n');
    const scope = q.get('X-Goog-Credential')!.split('/').slice(1).join('/');
    const stringToSign = ['GOOG4-RSA-SHA256', q.get('X-Goog-Date'), scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
    const ok = createVerify('RSA-SHA256').update(stringToSign).verify(options.signerPublicKey, Buffer.from(q.get('X-Goog-Signature')!, 'hex'));
    if (!ok) throw new HttpError(403, 'The request signature we calculated does not match the signature you provided.', 'SignatureDoesNotMatch');
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    // Split the raw path so that %2F inside an object name stays part of the name.
    const segments = url.pathname.split('/').slice(1);
    const q = url.searchParams;

    // Uploads: /upload/storage/v1/b/:bucket/o
    if (segments[0] === 'upload' && segments[1] === 'storage' && segments[3] === 'b' && segments[5] === 'o' && segments.length === 6) {
      const bucket = decodeURIComponent(segments[4]!);
      const uploadType = q.get('uploadType');
      if (method === 'POST' && uploadType === 'multipart') {
        const { metadata, data } = parseMultipart(req.headers['content-type'] ?? '', await readBody(req));
        if (options.corruptUploads && data.length) data[0] ^= 1;
        const name = (metadata.name as string | undefined) ?? q.get('name');
        if (!name) throw new HttpError(400, 'Required object name', 'required');
        const obj = put(bucket, name, data, metadata.contentType as string | undefined, metadata.metadata as Record<string, string> | undefined, q);
        return json(res, 200, resource(obj));
      }
      if (method === 'POST' && uploadType === 'resumable') {
        const body = await readBody(req);
        const metadata = body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
        const name = (metadata.name as string | undefined) ?? q.get('name');
        if (!name) throw new HttpError(400, 'Required object name', 'required');
        // GCS checks preconditions when the session starts and again when it completes.
        checkPreconditions(q, objects.get(key(bucket, name)));
        const id = randomUUID();
        sessions.set(id, {
          bucket,
          name,
          contentType: (metadata.contentType as string | undefined) ?? String(req.headers['x-upload-content-type'] ?? ''),
          metadata: (metadata.metadata as Record<string, string> | undefined) ?? {},
          preconditions: new URLSearchParams(q),
          chunks: [],
          size: 0,
        });
        res.writeHead(200, { Location: `${endpoint}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`, 'Content-Length': '0' });
        res.end();
        return;
      }
      if ((method === 'PUT' || method === 'POST') && uploadType === 'resumable') {
        const id = q.get('upload_id') ?? '';
        const session = sessions.get(id);
        if (!session) throw new HttpError(404, 'No such upload session', 'notFound');
        const body = await readBody(req);
        const range = /^bytes (?:(\d+)-(\d+|\*)|\*)\/(\d+|\*)$/.exec(String(req.headers['content-range'] ?? 'bytes */*'));
        if (!range) throw new HttpError(400, 'bad Content-Range', 'invalid');
        const [, startText, endText, totalText] = range;
        if (startText !== undefined) {
          const start = Number(startText);
          if (start > session.size) throw new HttpError(400, 'upload offset beyond received bytes', 'invalid');
          // A resent chunk may overlap bytes we already have; keep only the new tail.
          const fresh = body.subarray(session.size - start);
          session.chunks.push(fresh);
          session.size += fresh.length;
        }
        const total = totalText === '*' ? undefined : Number(totalText);
        // `bytes N-*/*` is the client's single-request mode: this request carried the rest.
        const complete = total !== undefined ? session.size >= total : endText === '*';
        if (!complete) {
          res.writeHead(308, session.size ? { Range: `bytes=0-${session.size - 1}`, 'Content-Length': '0' } : { 'Content-Length': '0' });
          res.end();
          return;
        }
        sessions.delete(id);
        const obj = put(session.bucket, session.name, Buffer.concat(session.chunks), session.contentType, session.metadata, session.preconditions);
        return json(res, 200, resource(obj));
      }
      if (method === 'DELETE' && uploadType === 'resumable') {
        sessions.delete(q.get('upload_id') ?? '');
        res.writeHead(499, { 'Content-Length': '0' });
        res.end();
        return;
      }
      throw new HttpError(400, `unsupported upload ${method} ${uploadType}`, 'invalid');
    }

    // JSON API and media download: /storage/v1/b/:bucket/o[/:object[/rewriteTo|copyTo/b/:bucket/o/:object]]
    const api = segments[0] === 'storage' ? 1 : segments[0] === 'download' && segments[1] === 'storage' ? 2 : 0;
    if (api && segments[api] === 'v1' && segments[api + 1] === 'b' && segments[api + 3] === 'o') {
      const bucket = decodeURIComponent(segments[api + 2]!);
      const rest = segments.slice(api + 4);
      if (rest.length === 0) {
        if (method === 'GET') return json(res, 200, list(bucket, q));
        throw new HttpError(405, 'method not allowed', 'invalid');
      }
      const name = decodeURIComponent(rest[0]!);
      if (rest.length === 1) {
        if (method === 'GET' || method === 'HEAD') {
          const obj = getObject(bucket, name);
          if (api === 2 || q.get('alt') === 'media') return sendMedia(req, res, obj);
          return json(res, 200, resource(obj));
        }
        if (method === 'DELETE') {
          checkPreconditions(q, getObject(bucket, name));
          objects.delete(key(bucket, name));
          res.writeHead(204);
          res.end();
          return;
        }
        if (method === 'PATCH') {
          const obj = getObject(bucket, name);
          const patch = JSON.parse((await readBody(req)).toString('utf8') || '{}') as { contentType?: string; metadata?: Record<string, string | null>; customTime?: string };
          if (patch.contentType) obj.contentType = patch.contentType;
          if (patch.customTime !== undefined) {
            const when = new Date(patch.customTime);
            if (Number.isNaN(when.getTime())) throw new HttpError(400, `invalid customTime ${patch.customTime}`, 'invalid');
            if (obj.customTime && when < obj.customTime) throw new HttpError(400, 'customTime cannot be moved earlier', 'invalid');
            obj.customTime = when;
          }
          for (const [k, v] of Object.entries(patch.metadata ?? {})) {
            if (v === null) delete obj.metadata[k];
            else obj.metadata[k] = v;
          }
          return json(res, 200, resource(obj));
        }
      }
      if (rest.length === 5 && (rest[1] === 'rewriteTo' || rest[1] === 'copyTo') && rest[2] === 'b' && rest[4] === 'o') {
        throw new HttpError(400, 'missing destination object', 'invalid');
      }
      if (rest.length === 6 && (rest[1] === 'rewriteTo' || rest[1] === 'copyTo') && rest[2] === 'b' && rest[4] === 'o' && method === 'POST') {
        const source = getObject(bucket, name);
        const destBucket = decodeURIComponent(rest[3]!);
        const destName = decodeURIComponent(rest[5]!);
        const body = await readBody(req);
        // A request body replaces the metadata; without one the source's is copied.
        const meta = body.length ? (JSON.parse(body.toString('utf8')) as { contentType?: string; metadata?: Record<string, string> }) : {};
        const hasBody = meta.contentType !== undefined || meta.metadata !== undefined;
        const obj = put(
          destBucket,
          destName,
          source.data,
          hasBody ? meta.contentType : source.contentType,
          hasBody ? meta.metadata : { ...source.metadata },
          q,
        );
        if (rest[1] === 'copyTo') return json(res, 200, resource(obj));
        return json(res, 200, {
          kind: 'storage#rewriteResponse',
          totalBytesRewritten: String(obj.data.length),
          objectSize: String(obj.data.length),
          done: true,
          resource: resource(obj),
        });
      }
      throw new HttpError(400, `unsupported ${method} ${url.pathname}`, 'invalid');
    }

    // Public and signed-URL downloads: /:bucket/:object...
    if ((method === 'GET' || method === 'HEAD') && segments.length >= 2 && segments[0] !== 'storage' && segments[0] !== 'upload') {
      if (q.has('X-Goog-Signature')) checkSignedUrl(req, url);
      const bucket = decodeURIComponent(segments[0]!);
      const name = segments.slice(1).map(decodeURIComponent).join('/');
      return sendMedia(req, res, getObject(bucket, name));
    }
    throw new HttpError(404, `unsupported ${method} ${url.pathname}`, 'notFound');
  }

  let inFlight = 0;
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? 'GET', path: req.url ?? '/' });
    inFlight++;
    res.once('close', () => inFlight--);
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const status = err instanceof HttpError ? err.status : 500;
      const reason = err instanceof HttpError ? err.reason : 'backendError';
      const message = err instanceof Error ? err.message : String(err);
      // Answer before the body is fully read (as GCS does), then drop the connection.
      json(res, status, { error: { code: status, message, errors: [{ message, domain: 'global', reason }] } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    endpoint,
    requests,
    inFlight: () => inFlight,
    age: (bucket, name, ms) => {
      const obj = getObject(bucket, name);
      obj.created = new Date(obj.created.getTime() - ms);
    },
    read: (bucket, name) => objects.get(key(bucket, name))?.data,
    write: (bucket, name, data, contentType) => {
      put(bucket, name, data, contentType, undefined, new URLSearchParams());
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Reads a whole request body; rejects when the client goes away before the end, so no partial object is stored. */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('close', () => {
      if (!req.complete) reject(new HttpError(400, 'client went away mid-body', 'aborted'));
    });
  });
}

/** multipart/related as the client sends it: a JSON metadata part, then the media part. */
function parseMultipart(contentType: string, body: Buffer): { metadata: Record<string, unknown>; data: Buffer } {
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (!boundary) throw new HttpError(400, 'multipart boundary missing', 'invalid');
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Buffer[] = [];
  let pos = body.indexOf(delimiter);
  while (pos >= 0) {
    const start = pos + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), start);
    if (next < 0) throw new HttpError(400, 'multipart body truncated', 'invalid');
    parts.push(body.subarray(start + 2, next)); // skip the CRLF after the delimiter
    pos = next + 2;
  }
  if (parts.length !== 2) throw new HttpError(400, `expected 2 multipart parts, got ${parts.length}`, 'invalid');
  const content = parts.map((part) => {
    const split = part.indexOf('\r\n\r\n');
    return split < 0 ? Buffer.alloc(0) : part.subarray(split + 4);
  });
  return { metadata: JSON.parse(content[0]!.toString('utf8')) as Record<string, unknown>, data: content[1]! };
}

/** Parses a single `bytes=` range; undefined means "ignore the header, send everything". */
function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

function parseGoogDate(text: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) throw new HttpError(400, 'bad X-Goog-Date', 'invalid');
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

/** Percent-encoding of everything outside RFC 3986 unreserved characters, as V4 signing wants. */
function rfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const CRC32C_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC32C (Castagnoli), base64 of the big-endian value, as GCS reports it. */
function crc32cBase64(data: Buffer): string {
  let crc = ~0;
  for (const byte of data) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((~crc) >>> 0);
  return out.toString('base64');
}
