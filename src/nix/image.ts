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
import { layerGroups, type StorePathInfo } from './layering.js';
import { hasFile, linksTar, storePathsTar } from './store-tar.js';

/** The service name store paths' layers are cached under (apart from the images). */
export const LAYER_CACHE = 'nix-layer';
const DIFF_ID = 'me.kontain.nix.diff-id';
const UNCOMPRESSED_SIZE = 'me.kontain.nix.uncompressed-size';
export const REVISION_ANNOTATION = 'org.opencontainers.image.revision';
const CA_BUNDLE = 'etc/ssl/certs/ca-bundle.crt';

export interface NixImageSpec {
  closure: StorePathInfo[];
  /** The requested packages' output paths, in package order (linked into `/`). */
  packagePaths: string[];
  shell: boolean;
  maxLayers: number;
  annotations: Record<string, string>;
  gzipLevel?: number;
}

export async function writeNixImage(store: ContentStore, spec: NixImageSpec): Promise<Descriptor> {
  const groups = layerGroups(spec.closure, spec.maxLayers - 1);
  const storeLayers = await mapConcurrent(groups, 2, (paths) => cachedStoreLayer(store, paths, spec.gzipLevel));
  const links = await linksTar(spec.packagePaths);
  const linkLayer = await writeGzipLayer(store, links.tar, { gzipLevel: spec.gzipLevel ?? 6 });
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
  return writeImage(store, { family: 'oci', config, layers: [...storeLayers, linkLayer], annotations: spec.annotations });
}

/**
 * The layer of a set of store paths, written once: it is remembered as a one-layer OCI
 * image under a pointer keyed by the sorted paths (so the store's garbage collection keeps
 * it while the pointer lives), its diff ID in the layer's annotations.
 */
async function cachedStoreLayer(store: ContentStore, paths: string[], gzipLevel = 6): Promise<WrittenLayer> {
  const key = createHash('sha256').update(paths.join('\n')).digest('hex');
  const descriptor = await store.cached(LAYER_CACHE, key, async () => {
    const layer = await writeGzipLayer(store, storePathsTar(paths), { gzipLevel });
    return writeImage(store, {
      family: 'oci',
      config: { architecture: 'amd64', os: 'linux' },
      layers: [{ ...layer, annotations: { [DIFF_ID]: layer.diffID, [UNCOMPRESSED_SIZE]: String(layer.uncompressedSize) } }],
    });
  });
  const manifest = await store.getManifest(descriptor.digest);
  const layer = (JSON.parse(manifest!.bytes.toString('utf8')) as { layers: Array<{ digest: string; size: number; annotations: Record<string, string> }> }).layers[0]!;
  return { digest: layer.digest, size: layer.size, diffID: layer.annotations[DIFF_ID]!, uncompressedSize: Number(layer.annotations[UNCOMPRESSED_SIZE]) };
}
