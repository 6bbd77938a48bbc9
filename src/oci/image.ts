import type { ContentStore } from '../content/store.js';
import { familyTypes, type FormatFamily } from './mediatypes.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from './types.js';
import type { WrittenLayer } from './layer.js';

export interface ImageSpec {
  family: FormatFamily;
  /** The config without rootfs: diff_ids are filled in from `layers`. */
  config: Partial<ImageConfig> & Pick<ImageConfig, 'architecture' | 'os'>;
  layers: Array<WrittenLayer & { mediaType?: string; annotations?: Record<string, string> }>;
  annotations?: Record<string, string>;
}

/** Writes the config blob and the manifest of an image whose layers are already stored. */
export async function writeImage(store: ContentStore, spec: ImageSpec): Promise<Descriptor> {
  const types = familyTypes[spec.family];
  const config: ImageConfig = { ...spec.config, rootfs: { type: 'layers', diff_ids: spec.layers.map((l) => l.diffID) } };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configBlob = await store.putBlobBytes(configBytes);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: types.manifest,
    config: { mediaType: types.config, digest: configBlob.digest, size: configBlob.size },
    layers: spec.layers.map((l) => ({
      mediaType: l.mediaType ?? types.layerGzip,
      digest: l.digest,
      size: l.size,
      ...(l.annotations && spec.family === 'oci' ? { annotations: l.annotations } : {}),
    })),
    ...(spec.annotations && spec.family === 'oci' ? { annotations: spec.annotations } : {}),
  };
  const descriptor = await store.putManifest(Buffer.from(JSON.stringify(manifest)), types.manifest);
  return { ...descriptor, platform: platformOf(config) };
}

/** Writes an index over already stored manifests (each descriptor carrying its platform). */
export async function writeIndex(store: ContentStore, family: FormatFamily, manifests: Descriptor[], annotations?: Record<string, string>): Promise<Descriptor> {
  const type = familyTypes[family].index;
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: type,
    manifests,
    ...(annotations && family === 'oci' ? { annotations } : {}),
  };
  return store.putManifest(Buffer.from(JSON.stringify(index)), type);
}

export function platformOf(config: Pick<ImageConfig, 'os' | 'architecture' | 'variant' | 'os.version'>): Platform {
  return {
    architecture: config.architecture,
    os: config.os,
    ...(config.variant ? { variant: config.variant } : {}),
    ...(config['os.version'] ? { 'os.version': config['os.version'] } : {}),
  };
}
