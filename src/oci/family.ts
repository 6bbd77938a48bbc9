import type { ContentStore } from '../content/store.js';
import { MediaType, familyOf, familyTypes, type FormatFamily } from './mediatypes.js';
import type { Descriptor, ImageManifest, StoredManifest } from './types.js';

/** Layer media types with a twin of the same bytes in the other family. */
const LAYER_TWINS: Record<string, string> = {
  [MediaType.ociLayerGzip]: MediaType.dockerLayerGzip,
  [MediaType.dockerLayerGzip]: MediaType.ociLayerGzip,
  [MediaType.ociLayerTar]: MediaType.dockerLayerTar,
  [MediaType.dockerLayerTar]: MediaType.ociLayerTar,
};

/**
 * The same image manifest written in the other media type family: the same config and
 * layer blobs, described with the other family's types (so it has its own digest). For
 * content made once and pulled by clients of either kind (wait). Undefined when the
 * manifest is not a plain image manifest, or has a layer type with no twin.
 */
export async function writeInFamily(store: ContentStore, stored: StoredManifest, family: FormatFamily): Promise<Descriptor | undefined> {
  if (stored.mediaType !== MediaType.ociManifest && stored.mediaType !== MediaType.dockerManifest) return undefined;
  if (familyOf(stored.mediaType) === family) return { mediaType: stored.mediaType, digest: stored.digest, size: stored.bytes.length };
  const manifest = JSON.parse(stored.bytes.toString('utf8')) as ImageManifest;
  const layers = manifest.layers.map((layer) => ({ ...layer, mediaType: LAYER_TWINS[layer.mediaType] ?? '' }));
  if (layers.some((layer) => layer.mediaType === '') || manifest.config.mediaType !== familyTypes[familyOf(stored.mediaType)].config) return undefined;
  const types = familyTypes[family];
  // Docker manifests have no annotations; the images kontain converts carry none anyway.
  const { annotations: _annotations, ...rest } = manifest;
  const twin: ImageManifest = { ...rest, mediaType: types.manifest, config: { ...manifest.config, mediaType: types.config }, layers };
  return store.putManifest(Buffer.from(JSON.stringify(twin)), types.manifest);
}
