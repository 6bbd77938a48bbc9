/**
 * Hostile image *content* for tests (transport-level hostility lives in
 * hostile-upstream.ts): layers of very many empty files, gzip bombs, malformed manifests.
 *
 * Content a real registry accepts is pushed to Debian's docker-registry through the
 * distribution API (`pushImage`). What it refuses (manifests without `layers`, `config:
 * null`, ...) is served by `startContentServer`, a small loopback registry that answers
 * manifests and blobs from a table, counts blob requests, and can hold a blob's tail
 * back until the test releases it.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { gzipSync, createGzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { ustarHeader } from '../../src/oci/estargz-tar.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import type { Descriptor } from '../../src/oci/types.js';
import { layerTar } from './rich-layers.js';

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');
const BLOCK = 512;

/** A gzip tar of `count` distinct empty files (`d<k>/f<n>`): a few MB that hold hundreds of MB of headers. */
export async function manyEmptyFilesLayer(count: number): Promise<Buffer> {
  const template = ustarHeader('d000/f0000000', 0);
  function* blocks(): Generator<Buffer> {
    const batch = 4096;
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const chunk = Buffer.alloc(n * BLOCK);
      for (let i = 0; i < n; i++) {
        const index = start + i;
        const block = chunk.subarray(i * BLOCK, (i + 1) * BLOCK);
        template.copy(block);
        block.write(`d${String(index % 1000).padStart(3, '0')}/f${String(index).padStart(7, '0')}`, 0, 'latin1');
        block.fill(0x20, 148, 156);
        let sum = 0;
        for (let b = 0; b < BLOCK; b++) sum += block[b]!;
        block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      }
      yield chunk;
    }
    yield Buffer.alloc(2 * BLOCK);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of Readable.from(blocks()).pipe(createGzip({ level: 1 }))) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A gzip tar holding one file of `bytes` zeros (a multiple of 64 MiB), built as one gzip
 * member repeated: a few KB per 64 MiB, so gigabytes of output cost the test nothing.
 */
export function gzipBombLayer(bytes: number): Buffer {
  const piece = 64 * 1024 * 1024;
  if (bytes % piece !== 0) throw new Error('gzipBombLayer: bytes must be a multiple of 64 MiB');
  const zeros = gzipSync(Buffer.alloc(piece), { level: 9 });
  const members = [gzipSync(ustarHeader('zeros', bytes))];
  for (let i = 0; i < bytes / piece; i++) members.push(zeros);
  members.push(gzipSync(Buffer.alloc(2 * BLOCK)));
  return Buffer.concat(members);
}

/** An uncompressed tar with a hardlink whose target exists nowhere. */
export function danglingHardlinkLayer(): Promise<Buffer> {
  return layerTar([{ type: 'link', name: 'link', target: 'missing/target' }]);
}

/** An uncompressed tar whose symlinks point at each other, then a file "inside" one of them. */
export function symlinkLoopLayer(): Promise<Buffer> {
  return layerTar([
    { type: 'symlink', name: 'a', target: 'b' },
    { type: 'symlink', name: 'b', target: 'a' },
    { type: 'file', name: 'a/file', content: 'x' },
  ]);
}

export interface CraftedImage {
  /** The manifest bytes exactly as served (anything at all). */
  manifest: Buffer;
  mediaType: string;
  digest: string;
  blobs: Map<string, Buffer>;
}

/**
 * An image of gzip layers with a plain config; `edit` may change the manifest object
 * before it is serialised (drop `layers`, null the config, ...).
 */
export function craftImage(layers: Buffer[], edit: (manifest: Record<string, unknown>) => void = () => {}): CraftedImage {
  const blobs = new Map<string, Buffer>();
  const put = (data: Buffer, mediaType: string): Descriptor => {
    const digest = sha256(data);
    blobs.set(digest, data);
    return { mediaType, digest, size: data.length };
  };
  const config = put(
    Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map(() => sha256(Buffer.alloc(0))) } })),
    MediaType.ociConfig,
  );
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config,
    layers: layers.map((layer) => put(layer, MediaType.ociLayerGzip)),
  };
  edit(manifest);
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { manifest: bytes, mediaType: MediaType.ociManifest, digest: sha256(bytes), blobs };
}

/** A manifest-like document served as `mediaType` with no blobs of its own (an index without `manifests`, ...). */
export function craftDocument(doc: unknown, mediaType: string): CraftedImage {
  const bytes = Buffer.from(JSON.stringify(doc));
  return { manifest: bytes, mediaType, digest: sha256(bytes), blobs: new Map() };
}

/** Pushes an image's blobs and then its manifest under `repository:tag` (monolithic uploads). */
export async function pushImage(registryUrl: string, repository: string, tag: string, image: CraftedImage): Promise<void> {
  for (const [digest, data] of image.blobs) {
    const started = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
    await started.arrayBuffer();
    if (started.status !== 202) throw new Error(`upload start: ${started.status}`);
    const location = new URL(started.headers.get('location')!, registryUrl);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', body: new Uint8Array(data), headers: { 'content-type': 'application/octet-stream' } });
    const text = await put.text();
    if (put.status !== 201) throw new Error(`upload of ${digest}: ${put.status} ${text}`);
  }
  const put = await fetch(`${registryUrl}/v2/${repository}/manifests/${tag}`, { method: 'PUT', body: new Uint8Array(image.manifest), headers: { 'content-type': image.mediaType } });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`manifest push: ${put.status} ${text}`);
}

export interface ContentServer {
  /** `127.0.0.1:PORT` */
  host: string;
  /** GET requests for blobs so far, by digest. */
  blobGets(digest: string): number;
  /**
   * Serves only the first `bytes` of the blob until `release()`; `sent` resolves once
   * those bytes have been written to the client.
   */
  holdBack(digest: string, bytes: number): { sent: Promise<void>; release(): void };
  stop(): Promise<void>;
}

/** A loopback registry answering `repository:tag` manifests and blobs from a table, byte for byte. */
export async function startContentServer(images: Record<string, CraftedImage>): Promise<ContentServer> {
  const gets = new Map<string, number>();
  const holds = new Map<string, { bytes: number; sent: () => void; released: Promise<void> }>();
  const blobs = new Map<string, Buffer>();
  for (const image of Object.values(images)) for (const [digest, data] of image.blobs) blobs.set(digest, data);
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/v2/') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (manifest) {
      const [, repository, reference] = manifest as unknown as [string, string, string];
      const image = Object.entries(images).find(([name, img]) => name === `${repository}:${reference}` || (name.startsWith(`${repository}:`) && img.digest === reference))?.[1];
      if (!image) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}');
        return;
      }
      res.writeHead(200, { 'content-type': image.mediaType, 'docker-content-digest': image.digest, 'content-length': image.manifest.length });
      res.end(req.method === 'HEAD' ? undefined : image.manifest);
      return;
    }
    const blob = /^\/v2\/.+\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
    const data = blob && blobs.get(blob[1]!);
    if (!blob || !data) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');
      return;
    }
    const digest = blob[1]!;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'docker-content-digest': digest, 'content-length': data.length });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    gets.set(digest, (gets.get(digest) ?? 0) + 1);
    const hold = holds.get(digest);
    if (!hold) {
      res.end(data);
      return;
    }
    res.write(data.subarray(0, hold.bytes), () => hold.sent());
    void hold.released.then(() => res.end(data.subarray(hold.bytes)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    host: `127.0.0.1:${port}`,
    blobGets: (digest) => gets.get(digest) ?? 0,
    holdBack(digest, bytes) {
      let sent!: () => void;
      let release!: () => void;
      const sentPromise = new Promise<void>((resolve) => (sent = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      holds.set(digest, { bytes, sent, released });
      return { sent: sentPromise, release };
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
