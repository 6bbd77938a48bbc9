/**
 * A `docker save`-format tarball (what nixpkgs' dockerTools.buildImage and
 * buildLayeredImage write, gzipped or not) served as the image it holds: one pass reads
 * manifest.json and the config, a second streams each layer tar through gzip into the
 * store. Layers are never held in memory.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { ContentStore } from '../content/store.js';
import { writeImage } from '../oci/image.js';
import { writeGzipLayer, type WrittenLayer } from '../oci/layer.js';
import type { Descriptor, ImageConfig } from '../oci/types.js';

export class ArchiveInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveInvalid';
  }
}

const MAX_SMALL_FILE = 4 * 1024 * 1024;

/** True when the file starts as a tar or gzip does. */
export async function looksLikeImageArchive(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(262);
    const { bytesRead } = await handle.read(head, 0, 262, 0);
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return true;
    return bytesRead >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    await handle.close();
  }
}

async function opened(file: string): Promise<Readable> {
  const handle = await open(file, 'r');
  const head = Buffer.alloc(2);
  await handle.read(head, 0, 2, 0);
  await handle.close();
  const raw = createReadStream(file);
  return head[0] === 0x1f && head[1] === 0x8b ? raw.pipe(createGunzip()) : raw;
}

/** Calls `onEntry` for each file entry; entries it does not consume are skipped. */
async function eachEntry(file: string, onEntry: (name: string, size: number, body: Readable) => Promise<void>): Promise<void> {
  const extract = tar.extract();
  const source = await opened(file);
  source.on('error', (err) => extract.destroy(err));
  source.pipe(extract);
  for await (const entry of extract) {
    const name = entry.header.name.replace(/^\.\//, '');
    if (entry.header.type === 'file') await onEntry(name, entry.header.size ?? 0, entry as unknown as Readable);
    entry.resume();
  }
}

async function small(body: Readable, size: number, name: string): Promise<Buffer> {
  if (size > MAX_SMALL_FILE) throw new ArchiveInvalid(`${name} in the image archive is larger than ${MAX_SMALL_FILE} bytes`);
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function importImageArchive(store: ContentStore, file: string, annotations: Record<string, string>): Promise<Descriptor> {
  const texts = new Map<string, Buffer>();
  await eachEntry(file, async (name, size, body) => {
    if (name === 'manifest.json' || name.endsWith('.json')) texts.set(name, await small(body, size, name));
  });
  const manifestBytes = texts.get('manifest.json');
  if (!manifestBytes) throw new ArchiveInvalid('the output is a tarball without manifest.json: not a docker image archive');
  let entry: { Config: string; Layers: string[] };
  let config: ImageConfig;
  try {
    entry = (JSON.parse(manifestBytes.toString('utf8')) as Array<{ Config: string; Layers: string[] }>)[0]!;
    config = JSON.parse(texts.get(entry.Config)?.toString('utf8') ?? 'null') as ImageConfig;
  } catch (err) {
    throw new ArchiveInvalid(`the image archive's manifest.json or config is not valid JSON: ${(err as Error).message}`);
  }
  if (!entry || !Array.isArray(entry.Layers) || !config) throw new ArchiveInvalid('the image archive names no config or layers');
  const written = new Map<string, WrittenLayer>();
  const wanted = new Set(entry.Layers);
  await eachEntry(file, async (name, _size, body) => {
    if (wanted.has(name) && !written.has(name)) written.set(name, await writeGzipLayer(store, body));
  });
  const layers = entry.Layers.map((name) => {
    const layer = written.get(name);
    if (!layer) throw new ArchiveInvalid(`the image archive has no layer ${name}`);
    return layer;
  });
  const { rootfs: _rootfs, ...rest } = config;
  return writeImage(store, { family: 'oci', config: { ...rest, architecture: rest.architecture ?? 'amd64', os: rest.os ?? 'linux' }, layers, annotations });
}
