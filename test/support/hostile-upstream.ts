/**
 * A registry on loopback that misbehaves on purpose, for tests of what kontain does with a
 * hostile or broken upstream: bodies that never end or trickle, sizes and digests that lie,
 * 404s that take their time, malformed manifests, token realms that cannot be used. It
 * speaks just enough of the distribution API for a puller (`/v2/`, manifests and blobs by
 * tag or digest, HEAD and GET); everything it serves is set by the test with `image` and
 * `answer`. (Content that is well-formed on the wire but hostile inside — gzip bombs,
 * many-file layers — is test/support/hostile-content.ts.)
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');

/** How one path is answered. */
export type Behavior =
  /** These bytes (and headers); the status defaults to 200 with Content-Length. */
  | { kind: 'bytes'; body: Buffer; contentType?: string; status?: number; headers?: Record<string, string>; digest?: string }
  /** Bytes without end, chunked (no Content-Length) unless `contentLength` says a (false) one. */
  | { kind: 'endless'; contentLength?: number }
  /** `body` one byte at a time, a byte every `intervalMs`; Content-Length is the body's. */
  | { kind: 'trickle'; body: Buffer; intervalMs: number }
  /** After `delayMs`, a status with a distribution error body (a slow 404). */
  | { kind: 'status'; status: number; delayMs?: number; code?: string; headers?: Record<string, string> }
  /** Headers, then nothing: the connection stays open until the test stops the server. */
  | { kind: 'hold' };

export interface HostileRequest {
  method: string;
  path: string;
  authorization?: string;
}

export interface HostileUpstream {
  /** `127.0.0.1:PORT` */
  host: string;
  /** The path kontain's mirror uses for this registry: `127.0.0.1-PORT`. */
  mirrorPath: string;
  requests: HostileRequest[];
  /** Answers `GET|HEAD /v2/<path>` (path after `/v2/`, e.g. `evil/app/blobs/sha256:…`). */
  answer(path: string, behavior: Behavior): void;
  /**
   * Serves an OCI image manifest under `repository` by `tag` and by its digest, naming the
   * given layers (their digests and sizes may be lies: the blobs are answered separately)
   * and a small real config. Returns the manifest's digest and bytes.
   */
  image(repository: string, tag: string, layers: Array<{ digest: string; size: number }>): { digest: string; bytes: Buffer; config: Buffer };
  /** Bytes of response bodies written per path so far (what kontain took before it stopped). */
  sent(path: string): number;
  /** Whether a response to this path is still being written (an endless or trickling body). */
  open(path: string): boolean;
  stop(): Promise<void>;
}

export async function startHostileUpstream(): Promise<HostileUpstream> {
  const behaviors = new Map<string, Behavior>();
  const sentBytes = new Map<string, number>();
  const openPaths = new Map<string, number>();
  const requests: HostileRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const count = (path: string, n: number) => sentBytes.set(path, (sentBytes.get(path) ?? 0) + n);
  const track = (path: string, res: ServerResponse) => {
    openPaths.set(path, (openPaths.get(path) ?? 0) + 1);
    res.once('close', () => openPaths.set(path, openPaths.get(path)! - 1));
  };

  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://upstream.invalid');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    if (url.pathname === '/v2/' || url.pathname === '/v2') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
      return;
    }
    const path = url.pathname.replace(/^\/v2\//, '');
    const behavior = behaviors.get(path);
    const head = req.method === 'HEAD';
    if (!behavior) {
      const code = path.includes('/blobs/') ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN';
      res.writeHead(404, { 'Content-Type': 'application/json' }).end(head ? undefined : JSON.stringify({ errors: [{ code, message: `${path} is not here` }] }));
      return;
    }
    track(path, res);
    switch (behavior.kind) {
      case 'bytes': {
        res.writeHead(behavior.status ?? 200, {
          'Content-Type': behavior.contentType ?? 'application/octet-stream',
          'Content-Length': String(behavior.body.length),
          ...(behavior.digest ? { 'Docker-Content-Digest': behavior.digest } : {}),
          ...behavior.headers,
        });
        if (!head) count(path, behavior.body.length);
        res.end(head ? undefined : behavior.body);
        return;
      }
      case 'endless': {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', ...(behavior.contentLength !== undefined ? { 'Content-Length': String(behavior.contentLength) } : {}) });
        if (head) return void res.end();
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        const pump = () => {
          while (!res.destroyed && res.write(chunk)) count(path, chunk.length);
          if (!res.destroyed) {
            count(path, chunk.length);
            res.once('drain', pump);
          }
        };
        pump();
        return;
      }
      case 'trickle': {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(behavior.body.length) });
        if (head) return void res.end();
        let at = 0;
        const timer = setInterval(() => {
          if (res.destroyed || at >= behavior.body.length) {
            clearInterval(timer);
            timers.delete(timer);
            if (!res.destroyed) res.end();
            return;
          }
          res.write(behavior.body.subarray(at, at + 1));
          count(path, 1);
          at++;
        }, behavior.intervalMs);
        timers.add(timer);
        return;
      }
      case 'status': {
        const timer = setTimeout(() => {
          timers.delete(timer);
          const body = JSON.stringify({ errors: [{ code: behavior.code ?? 'UNKNOWN', message: `hostile upstream answers ${behavior.status}` }] });
          res.writeHead(behavior.status, { 'Content-Type': 'application/json', ...behavior.headers });
          res.end(head ? undefined : body);
        }, behavior.delayMs ?? 0);
        timers.add(timer);
        return;
      }
      case 'hold':
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        res.flushHeaders();
        return;
    }
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;

  return {
    host,
    mirrorPath: `127.0.0.1-${port}`,
    requests,
    answer: (path, behavior) => void behaviors.set(path, behavior),
    image(repository, tag, layers) {
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) }, config: {} }));
      const configDigest = sha256(config);
      const manifest = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
      };
      const bytes = Buffer.from(JSON.stringify(manifest));
      const digest = sha256(bytes);
      const served: Behavior = { kind: 'bytes', body: bytes, contentType: manifest.mediaType, digest };
      behaviors.set(`${repository}/manifests/${tag}`, served);
      behaviors.set(`${repository}/manifests/${digest}`, served);
      behaviors.set(`${repository}/blobs/${configDigest}`, { kind: 'bytes', body: config });
      return { digest, bytes, config };
    },
    sent: (path) => sentBytes.get(path) ?? 0,
    open: (path) => (openPaths.get(path) ?? 0) > 0,
    async stop() {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
