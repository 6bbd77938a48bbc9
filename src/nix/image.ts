/**
 * Lays a built Nix closure out as an OCI image: the store paths in layers grouped by
 * `layerGroups` (each layer cached by its set of store paths and written once, so images
 * sharing paths share blobs), a last layer of links into the store, and a config with
 * PATH, SSL_CERT_FILE when a CA bundle is present, and bash as the command for `shell`.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ContentStore } from '../content/store.js';
import { writeImage } from '../oci/image.js';
import { writeGzipLayer, type WrittenLayer } from '../oci/layer.js';
import type { Descriptor, ImageConfig } from '../oci/types.js';
import { mapConcurrent } from '../util/concurrency.js';
import { SingleFlight } from '../util/single-flight.js';
import { layerGroups, type StorePathInfo } from './layering.js';
import { hasFile, linksTar, storePathsTar } from './store-tar.js';

/** The service name store paths' layers are cached under (apart from the images). */
export const LAYER_CACHE = 'nix-layer';
export const REVISION_ANNOTATION = 'org.opencontainers.image.revision';
const CA_BUNDLE = 'etc/ssl/certs/ca-bundle.crt';
const LAYER_ANNOTATION = 'me.kontain.nix.layer';
/**
 * gzip level of store layers: the fastest. Layers are made while the first client waits,
 * and level 6 took about 40% more time for about 6% smaller blobs (bench/nix).
 */
export const STORE_LAYER_GZIP_LEVEL = 1;
/** Layers packed at once: each compresses on two threads, and file reads and syncs of one overlap another's compression. */
const LAYERS_AT_ONCE = 3;

export interface NixImageSpec {
  closure: StorePathInfo[];
  /** The requested packages' output paths, in package order (linked into `/`). */
  packagePaths: string[];
  shell: boolean;
  maxLayers: number;
  annotations: Record<string, string>;
}

export async function writeNixImage(store: ContentStore, spec: NixImageSpec): Promise<Descriptor> {
  const groups = layerGroups(spec.closure, spec.maxLayers - 1);
  const storeLayers = await storeLayersOf(store, groups, spec.closure);
  const links = await linksTar(spec.packagePaths);
  const linkLayer = await writeGzipLayer(store, links.tar, { gzipLevel: STORE_LAYER_GZIP_LEVEL });
  let caBundle: string | undefined;
  for (const pkg of spec.packagePaths) {
    if (await hasFile(path.join(pkg, CA_BUNDLE))) {
      caBundle = path.join(pkg, CA_BUNDLE);
      break;
    }
  }
  const env = ['PATH=/bin:/sbin', ...(caBundle ? [`SSL_CERT_FILE=${caBundle}`] : [])];
  const config: Partial<ImageConfig> & Pick<ImageConfig, 'architecture' | 'os'> = {
    architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
    os: 'linux',
    config: { Env: env, ...(spec.shell ? { Cmd: ['bash'] } : {}) },
    history: [
      ...groups.map((paths) => ({ created_by: 'nix', comment: paths.length === 1 ? paths[0]! : `${paths.length} store paths` })),
      { created_by: 'kontain nix', comment: 'links into the store' },
    ],
  };
  const image = await writeImage(store, { family: 'oci', config, layers: [...storeLayers.map((l) => l.layer), linkLayer], annotations: spec.annotations });
  await rememberLayers(store, image, groups, storeLayers);
  return image;
}

export interface StoreLayer {
  layer: WrittenLayer;
  /** Found in the cache rather than packed now. */
  cached: boolean;
}

/** Layers packed now are remembered once `image`, which keeps them alive, exists. */
export async function rememberLayers(store: ContentStore, image: Descriptor, groups: string[][], layers: StoreLayer[]): Promise<void> {
  const written = layers.map((l, i) => ({ ...l, key: layerKey(groups[i]!) })).filter((l) => !l.cached);
  await mapConcurrent(written, 8, (l) => store.setPointer(LAYER_CACHE, l.key, layerPointer(image, l.layer)));
}

/** Each group's layer, from the cache or packed now (the largest first, so the last to finish is small). */
export async function storeLayersOf(store: ContentStore, groups: string[][], closure: StorePathInfo[]): Promise<StoreLayer[]> {
  const sizes = new Map(closure.map((p) => [p.path, p.narSize]));
  const bytes = groups.map((paths) => paths.reduce((n, p) => n + (sizes.get(p) ?? 0), 0));
  const order = groups.map((_, i) => i).sort((a, b) => bytes[b]! - bytes[a]! || a - b);
  const layers = await mapConcurrent(order, LAYERS_AT_ONCE, (i) => storeLayer(store, groups[i]!));
  const byGroup = new Array<StoreLayer>(groups.length);
  order.forEach((group, i) => (byGroup[group] = layers[i]!));
  return byGroup;
}

const layerKey = (paths: string[]) => createHash('sha256').update(paths.join('\n')).digest('hex');

/** Layers being packed in this process, by store and key: two images sharing one pack it once. */
const packing = new SingleFlight<WrittenLayer>();

/**
 * The layer of a set of store paths, written once. It is remembered by a pointer keyed by
 * the sorted paths that names the image it was first written for (which keeps the blob
 * alive through garbage collection while the pointer lives), the layer itself in the
 * pointer's annotations. Across instances a layer may be packed twice: content-addressed,
 * that costs time only (whole images are built once, under the build facility's lease).
 */
async function storeLayer(store: ContentStore, paths: string[]): Promise<StoreLayer> {
  const key = layerKey(paths);
  const pointer = await store.getPointer(LAYER_CACHE, key);
  const remembered = pointer && (await store.getManifest(pointer.descriptor.digest)) ? layerOfPointer(pointer.descriptor) : undefined;
  if (remembered) return { layer: remembered, cached: true };
  const layer = await packing.run(`${store.backend.description}\0${key}`, () => writeGzipLayer(store, storePathsTar(paths), { gzipLevel: STORE_LAYER_GZIP_LEVEL }));
  return { layer, cached: false };
}

function layerPointer(image: Descriptor, layer: WrittenLayer): Descriptor {
  return { mediaType: image.mediaType, digest: image.digest, size: image.size, annotations: { [LAYER_ANNOTATION]: JSON.stringify(layer) } };
}

function layerOfPointer(descriptor: Descriptor): WrittenLayer | undefined {
  const text = descriptor.annotations?.[LAYER_ANNOTATION];
  if (!text) return undefined;
  const layer = JSON.parse(text) as Partial<WrittenLayer>;
  const complete = typeof layer.digest === 'string' && typeof layer.diffID === 'string' && typeof layer.size === 'number' && typeof layer.uncompressedSize === 'number';
  return complete ? (layer as WrittenLayer) : undefined;
}
