/**
 * Pushes blobs and hand-written manifests to a test registry over the distribution API, for
 * images no layout tool would write (many layers, shared in odd orders): an upload per
 * blob, a `PUT` per manifest.
 */
import { createHash } from 'node:crypto';
import { MediaType } from '../../src/oci/mediatypes.js';

export interface PushedBlob {
  digest: string;
  size: number;
}

const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** `registryUrl` is `http://host:port`. An upload is opened (POST) and completed with the bytes (PUT). */
export async function pushBlob(registryUrl: string, repository: string, bytes: Buffer): Promise<PushedBlob> {
  const digest = digestOf(bytes);
  const opened = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  const location = opened.headers.get('location');
  if (opened.status !== 202 || !location) throw new Error(`opening an upload to ${repository}: ${opened.status} ${await opened.text()}`);
  const url = new URL(location, registryUrl);
  url.searchParams.set('digest', digest);
  const res = await fetch(url, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(bytes) });
  if (res.status !== 201) throw new Error(`pushing blob ${digest} to ${repository}: ${res.status} ${await res.text()}`);
  return { digest, size: bytes.length };
}

/** An OCI image manifest over blobs already pushed to `repository`, put under `tag`; returns its digest. */
export async function putImageManifest(registryUrl: string, repository: string, tag: string, config: PushedBlob, layers: PushedBlob[]): Promise<string> {
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, ...config },
      layers: layers.map((l) => ({ mediaType: MediaType.ociLayerGzip, ...l })),
    }),
  );
  const res = await fetch(`${registryUrl}/v2/${repository}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'Content-Type': MediaType.ociManifest },
    body: new Uint8Array(manifest),
  });
  if (res.status !== 201) throw new Error(`putting manifest ${repository}:${tag}: ${res.status} ${await res.text()}`);
  return digestOf(manifest);
}
