import { randomFill } from 'node:crypto';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { RegistryError } from '../registry/errors.js';
import { writeGzipLayer } from '../oci/layer.js';
import { mapConcurrent } from '../util/concurrency.js';
import { writeImage } from '../oci/image.js';
import type { Descriptor } from '../oci/types.js';
import type { FormatFamily } from '../oci/mediatypes.js';
import type { ContentStore } from '../content/store.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import type { Logger } from 'pino';
import { Semaphore } from '../util/semaphore.js';

export const RANDOM_MAX_LAYERS = 99;
export const RANDOM_MAX_SIZE = 99_999_999;
const DEFAULT_SHAPE = { layers: 1, size: 10_000_000 };
const UNITS: Record<string, number> = { '': 1, kb: 1000, mb: 1000 * 1000, kib: 1024, mib: 1024 * 1024 };
const CHUNK = 1 << 20;
const LAYER_CONCURRENCY = 3;
const randomChunk = (length: number) =>
  new Promise<Buffer>((resolve, reject) => randomFill(Buffer.allocUnsafe(length), (err, filled) => (err ? reject(err) : resolve(filled))));

export interface RandomShape {
  layers: number;
  /** Bytes of random payload in each layer. */
  size: number;
}

/**
 * Reads `<N>x<SIZE>[unit]` from anywhere in a tag, as kontain.me does (`4x100`,
 * `foo-2x3mb`); a tag without one (`latest`) gets the default of one 10 MB layer.
 */
export function parseRandomTag(tag: string): RandomShape {
  const match = /(\d+)x(\d+)(kib|mib|kb|mb)?/i.exec(tag);
  if (!match) return DEFAULT_SHAPE;
  const layers = Number(match[1]);
  const unit = (match[3] ?? '').toLowerCase();
  const size = Number(match[2]) * UNITS[unit]!;
  if (layers < 1 || layers > RANDOM_MAX_LAYERS) {
    throw new RegistryError('MANIFEST_UNKNOWN', `tag ${tag} asks for ${layers} layers; random images have 1 to ${RANDOM_MAX_LAYERS} layers`);
  }
  if (size < 1 || size > RANDOM_MAX_SIZE) {
    throw new RegistryError(
      'MANIFEST_UNKNOWN',
      `tag ${tag} asks for layers of ${size} bytes; each random layer holds 1 to ${RANDOM_MAX_SIZE.toLocaleString('en-US')} bytes`,
    );
  }
  return { layers, size };
}

/**
 * A tar holding one file of `size` random bytes, produced chunk by chunk. The next chunk
 * is filled on the thread pool while the current one is hashed on the main thread.
 * When `signal` aborts, the stream fails with its reason at the next chunk.
 */
export function randomLayerTar(name: string, size: number, signal?: AbortSignal): Readable {
  const pack = tar.pack();
  const entry = pack.entry({ name, size, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, type: 'file' });
  // Destroying the pack fails the entry too; the pack's own error is the one that is reported.
  entry.on('error', () => undefined);
  (async () => {
    let remaining = size;
    let pending = remaining > 0 ? randomChunk(Math.min(CHUNK, remaining)) : undefined;
    while (pending) {
      const chunk = await pending;
      signal?.throwIfAborted();
      remaining -= chunk.length;
      pending = remaining > 0 ? randomChunk(Math.min(CHUNK, remaining)) : undefined;
      if (!entry.write(chunk)) await once(entry, 'drain');
    }
    (entry as unknown as { end(): void }).end();
    pack.finalize();
  })().catch((err: Error) => pack.destroy(err));
  return pack as unknown as Readable;
}

/** `random`: a fresh image of random layers on every tag request. */
export class RandomGenerator implements Generator {
  readonly service = 'random';

  /** Bytes of images being generated, all requests together (`KONTAIN_RANDOM_MAX_BYTES_AT_ONCE`). */
  private readonly generating: Semaphore;

  constructor(private readonly context: GeneratorContext) {
    this.generating = new Semaphore(context.config.randomMaxBytesAtOnce);
  }

  async manifest(request: TagRequest): Promise<Descriptor> {
    const shape = parseRandomTag(request.tag);
    const bytes = shape.layers * shape.size;
    const cap = this.context.config.randomMaxBytesAtOnce;
    if (bytes > cap) {
      throw new RegistryError(
        'MANIFEST_UNKNOWN',
        `tag ${request.tag} asks for ${bytes.toLocaleString('en-US')} bytes of layers; this server generates at most ${cap.toLocaleString('en-US')} at once (KONTAIN_RANDOM_MAX_BYTES_AT_ONCE)`,
        { status: 422 },
      );
    }
    // Waits its turn while other requests hold the cap; leaves the queue if its client does.
    return this.generating.run(() => writeRandomImage(this.context.store, shape, request.accept.preferredFamily(), request.signal, request.log), {
      weight: bytes,
      signal: request.signal,
    });
  }
}

/**
 * Writes an image of `shape.layers` layers of `shape.size` random bytes each (random and
 * wait hosts). When `signal` aborts (the client left), writing stops and the layers
 * already written are deleted: they are random, so no other image can share them.
 */
export async function writeRandomImage(store: ContentStore, shape: RandomShape, family: FormatFamily, signal?: AbortSignal, log?: Logger): Promise<Descriptor> {
  const written: string[] = [];
  let layers;
  try {
    // A few layers at a time, so one layer's fsync overlaps the next one's hashing; a
    // small bound keeps memory flat for 99-layer images.
    layers = await mapConcurrent(Array.from({ length: shape.layers }, (_, i) => i), LAYER_CONCURRENCY, async (i) => {
      signal?.throwIfAborted();
      // Random bytes do not compress: gzip level 0 keeps valid gzip layers without the cost.
      const layer = await writeGzipLayer(store, randomLayerTar(`random-${i}`, shape.size, signal), { gzipLevel: 0 });
      written.push(layer.digest);
      return layer;
    });
  } catch (err) {
    if (!signal?.aborted) throw err;
    await Promise.all(written.map((digest) => store.deleteBlob(digest)));
    log?.info({ layersWritten: written.length, layers: shape.layers }, 'random: the client left; generation stopped and its layers deleted');
    throw err;
  }
  const created = new Date().toISOString();
  return writeImage(store, {
    family,
    config: {
      created,
      architecture: 'amd64',
      os: 'linux',
      config: {},
      history: layers.map((_, i) => ({ created, created_by: `kontain random layer ${i + 1} of ${shape.layers}, ${shape.size} bytes` })),
    },
    layers,
  });
}
