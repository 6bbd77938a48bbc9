/**
 * Flake outputs that are already images, served as those images:
 *
 * - a `docker save` tarball (dockerTools buildImage, buildLayeredImage): imported;
 * - a streamLayeredImage script (an executable writing such a tarball to stdout): run,
 *   bounded in time and bytes, its tarball spooled to a file, then imported;
 * - a layer configuration (flakehub's `streamLayeredImageConf`, the same JSON nixpkgs'
 *   stream script reads: `store_layers`, `customisation_layer`, `config`, …): its layers
 *   packed here as the configuration groups them, each cached like any store layer.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ContentStore } from '../content/store.js';
import { writeImage } from '../oci/image.js';
import { writeGzipLayer } from '../oci/layer.js';
import type { Descriptor, ImageConfig } from '../oci/types.js';
import { ByteLimit } from '../util/byte-limit.js';
import { runProcess } from '../util/run-process.js';
import { ArchiveInvalid, importImageArchive, looksLikeImageArchive } from './docker-archive.js';
import { rememberLayers, STORE_LAYER_GZIP_LEVEL, storeLayersOf } from './image.js';
import type { StorePathInfo } from './layering.js';
import { NixFailed, NixTimeout } from './run.js';

export type ImageOutput = 'archive' | 'stream-script' | 'layer-config';

const MAX_LAYER_CONFIG_BYTES = 4 * 1024 * 1024;

/** What kind of image a single-file output is, if it is one. */
export async function imageOutputKind(file: string): Promise<ImageOutput | undefined> {
  const info = await stat(file);
  if (!info.isFile()) return undefined;
  if (await looksLikeImageArchive(file)) return 'archive';
  const handle = await open(file, 'r');
  let head: string;
  try {
    const buffer = Buffer.alloc(2);
    await handle.read(buffer, 0, 2, 0);
    head = buffer.toString('latin1');
  } finally {
    await handle.close();
  }
  if (head === '#!' && (info.mode & 0o111) !== 0) return 'stream-script';
  if (head.startsWith('{') && info.size <= MAX_LAYER_CONFIG_BYTES) {
    const conf = parseLayerConfig(await readFile(file, 'utf8'));
    if (conf) return 'layer-config';
  }
  return undefined;
}

export interface StreamScriptLimits {
  /** Where the tarball is spooled (a directory of the server's own). */
  workDir: string;
  timeoutMs: number;
  maxBytes: number;
  signal?: AbortSignal;
}

/** Runs a streamLayeredImage script and imports the tarball it writes. */
export async function importStreamScript(store: ContentStore, script: string, limits: StreamScriptLimits, annotations: Record<string, string>): Promise<Descriptor> {
  await mkdir(limits.workDir, { recursive: true });
  const dir = await mkdtemp(path.join(limits.workDir, 'nix-stream-'));
  const tarball = path.join(dir, 'image.tar');
  try {
    const limit = new ByteLimit(limits.maxBytes, () => new ArchiveInvalid(`${script} wrote more than ${limits.maxBytes} bytes (KONTAIN_DERIVED_MAX_BYTES) and was stopped`));
    let copied: Promise<void> = Promise.resolve();
    const stderr: string[] = [];
    // Stopped (its whole process group) when the client leaves or the copy fails.
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    limits.signal?.addEventListener('abort', onAbort, { once: true });
    const outcome = await runProcess(script, [], {
      cwd: dir,
      timeoutMs: limits.timeoutMs,
      signal: stop.signal,
      stdout: (stream) => {
        copied = pipeline(stream, limit, createWriteStream(tarball));
        copied.catch(() => stop.abort());
      },
      onLine: (line) => {
        stderr.push(line);
        if (stderr.length > 25) stderr.shift();
      },
    }).finally(() => limits.signal?.removeEventListener('abort', onAbort));
    await copied;
    if (outcome.timedOut) throw new NixTimeout(`${script} took longer than ${Math.round(limits.timeoutMs / 1000)} s to write its image and was stopped`);
    if (outcome.aborted) throw limits.signal?.reason ?? new Error(`${script} was cancelled`);
    if (outcome.code !== 0) throw new NixFailed(`the image script ${script} failed (${outcome.signal ?? `exit ${outcome.code}`}):\n${stderr.join('\n')}`, stderr.join('\n'));
    return await importImageArchive(store, tarball, annotations);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The parts of a layer configuration kontain uses. */
export interface LayerConfig {
  store_layers: string[][];
  customisation_layer: string;
  config?: ImageConfig['config'];
  architecture?: string;
  created?: string;
  from_image?: string | null;
}

export function parseLayerConfig(text: string): LayerConfig | undefined {
  let json: Partial<LayerConfig>;
  try {
    json = JSON.parse(text) as Partial<LayerConfig>;
  } catch {
    return undefined;
  }
  if (!json || typeof json !== 'object') return undefined;
  const layers = json.store_layers;
  if (!Array.isArray(layers) || !layers.every((l) => Array.isArray(l) && l.every((p) => typeof p === 'string'))) return undefined;
  if (typeof json.customisation_layer !== 'string') return undefined;
  return json as LayerConfig;
}

/**
 * The image a layer configuration describes: each of its store layers (paths checked to
 * be in the configuration's own closure, so it can name nothing else on this machine),
 * then the customisation layer's `layer.tar`, then its config.
 */
export async function writeLayerConfigImage(
  store: ContentStore,
  file: string,
  closure: StorePathInfo[],
  annotations: Record<string, string>,
): Promise<Descriptor> {
  const conf = parseLayerConfig(await readFile(file, 'utf8'));
  if (!conf) throw new ArchiveInvalid(`${file} is not a layer configuration`);
  if (conf.from_image) throw new ArchiveInvalid('the layer configuration names a fromImage base, which kontain does not serve; build the image without fromImage');
  const inClosure = new Set(closure.map((p) => p.path));
  const groups = conf.store_layers.filter((paths) => paths.length > 0).map((paths) => [...paths].sort());
  const customisation = conf.customisation_layer;
  for (const storePath of [...groups.flat(), customisation]) {
    if (!inClosure.has(storePath)) throw new ArchiveInvalid(`the layer configuration names ${storePath}, which is not in its closure`);
  }
  const storeLayers = await storeLayersOf(store, groups, closure);
  const custom = await writeGzipLayer(store, createReadStream(path.join(customisation, 'layer.tar')), { gzipLevel: STORE_LAYER_GZIP_LEVEL });
  const config: Partial<ImageConfig> & Pick<ImageConfig, 'architecture' | 'os'> = {
    architecture: conf.architecture ?? (process.arch === 'arm64' ? 'arm64' : 'amd64'),
    os: 'linux',
    ...(conf.created && Number.isFinite(Date.parse(conf.created)) ? { created: new Date(conf.created).toISOString() } : {}),
    config: conf.config ?? {},
    history: [
      ...groups.map((paths) => ({ created_by: 'nix', comment: paths.length === 1 ? paths[0]! : `${paths.length} store paths` })),
      { created_by: 'nix', comment: 'customisation layer' },
    ],
  };
  const image = await writeImage(store, { family: 'oci', config, layers: [...storeLayers.map((l) => l.layer), custom], annotations });
  await rememberLayers(store, image, groups, storeLayers);
  return image;
}
