/**
 * Where the proxies read an image from: an upstream registry, an OCI layout, a skopeo
 * `dir:` copy, or one of kontain's own hosts. Each gives manifests by digest and blobs as
 * streams that are checked against their digest while they flow and error instead of
 * ending when the bytes are wrong.
 */
import type { Readable } from 'node:stream';
import { readLimited } from '../util/byte-limit.js';
import { VerifyingStream } from '../remote/verify.js';
import type { StoredManifest } from '../oci/types.js';

export interface SourceBlob {
  stream: Readable;
  /** Bytes the stream delivers, when known before reading. */
  size?: number;
}

export interface ImageSource {
  /** The reference as the user wrote it, for messages. */
  readonly name: string;
  /** What the reference names: an image manifest or an index. */
  readonly top: StoredManifest;
  /** A manifest of the same repository by digest (an index's image). */
  manifest(digest: string): Promise<StoredManifest>;
  /** A blob, verified against `digest` (and `size` when given) as it streams. */
  blob(digest: string, size?: number): Promise<SourceBlob>;
  close(): Promise<void>;
}

/** The reference names nothing (unknown tag, image or repository): OpenImageOptional's "no image". */
export class ImageNotFound extends Error {}

/** Manifests are small; a bigger one is refused rather than read into memory. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Configs are read whole to convert them; containers/image allows the same. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** Wraps a raw byte stream in digest and size verification. */
export function verified(source: string, stream: Readable, digest: string, size: number | undefined): Readable {
  const check = new VerifyingStream({ registry: source, what: `blob ${digest}`, digest, size });
  stream.on('error', (err) => check.destroy(err));
  return stream.pipe(check);
}

/** A whole small blob (a config), verified. */
export async function readBlobBytes(source: ImageSource, digest: string, size: number | undefined, limit = MAX_CONFIG_BYTES): Promise<Buffer> {
  if (size !== undefined && size > limit) throw new Error(`blob ${digest} of ${source.name} is ${size} bytes; at most ${limit} are read`);
  const { stream } = await source.blob(digest, size);
  return readLimited(stream, limit, () => new Error(`blob ${digest} of ${source.name} is larger than ${limit} bytes`));
}
