/**
 * A ko image: the base image's layers, then the kodata layer, then the binary layer, with
 * the base config changed as ko changes it (ko's gobuild.go): Entrypoint the binary, Cmd
 * cleared, /ko-app on PATH, KO_DATA_PATH set, author ko, two history entries.
 */
import type { ContentStore } from '../content/store.js';
import { writeImage } from '../oci/image.js';
import type { WrittenLayer } from '../oci/layer.js';
import type { Descriptor, HistoryEntry, ImageConfig } from '../oci/types.js';
import type { BaseImage, BasePlatformImage } from './base-image.js';
import { KO_APP_DIR, KO_DATA_PATH } from './layers.js';

export const BASE_NAME_ANNOTATION = 'org.opencontainers.image.base.name';
export const BASE_DIGEST_ANNOTATION = 'org.opencontainers.image.base.digest';

/** ko's zero time: history entries carry it unless SOURCE_DATE_EPOCH is set. */
const ZERO_TIME = '1970-01-01T00:00:00Z';

export async function writeKoImage(
  store: ContentStore,
  base: BaseImage,
  image: BasePlatformImage,
  layers: { kodata: WrittenLayer; binary: WrittenLayer },
  appName: string,
  importPath: string,
): Promise<Descriptor> {
  const diffIDs = image.config.rootfs?.diff_ids ?? [];
  if (diffIDs.length !== image.manifest.layers.length) {
    throw new Error(`base image ${base.name} (${image.descriptor.digest}) has ${image.manifest.layers.length} layers but ${diffIDs.length} diff_ids`);
  }
  const baseLayers = image.manifest.layers.map((layer, i) => ({
    digest: layer.digest,
    size: layer.size,
    diffID: diffIDs[i]!,
    uncompressedSize: 0,
    mediaType: layer.mediaType,
    ...(layer.annotations ? { annotations: layer.annotations } : {}),
  }));
  const binaryPath = `${KO_APP_DIR}/${appName}`;
  const { rootfs: _rootfs, ...baseConfig } = image.config;
  const runtime = baseConfig.config ?? {};
  const history: HistoryEntry[] = [
    ...(baseConfig.history ?? []),
    { author: 'ko', created: ZERO_TIME, created_by: 'ko build ko://' + importPath, comment: `kodata contents, at $KO_DATA_PATH` },
    { author: 'ko', created: ZERO_TIME, created_by: 'ko build ko://' + importPath, comment: `go build output, at ${binaryPath}` },
  ];
  const config: Partial<ImageConfig> & Pick<ImageConfig, 'architecture' | 'os'> = {
    ...baseConfig,
    author: 'github.com/ko-build/ko',
    history,
    config: { ...runtime, Entrypoint: [binaryPath], Cmd: null, Env: koEnv(runtime.Env ?? []) },
  };
  return writeImage(store, {
    family: base.family,
    config,
    // ko's layers take the base's family (writeImage's default): OCI base, OCI layers.
    layers: [...baseLayers, layers.kodata, layers.binary],
    annotations: { [BASE_NAME_ANNOTATION]: base.name, [BASE_DIGEST_ANNOTATION]: image.descriptor.digest },
  });
}

/** /ko-app appended to PATH (or PATH=/ko-app), and KO_DATA_PATH, as ko sets them. */
export function koEnv(env: readonly string[]): string[] {
  let sawPath = false;
  const out = env.map((entry) => {
    if (!entry.startsWith('PATH=')) return entry;
    sawPath = true;
    return entry === 'PATH=' ? `PATH=${KO_APP_DIR}` : `${entry}:${KO_APP_DIR}`;
  });
  if (!sawPath) out.push(`PATH=${KO_APP_DIR}`);
  return [...out.filter((e) => !e.startsWith('KO_DATA_PATH=')), `KO_DATA_PATH=${KO_DATA_PATH}`];
}
