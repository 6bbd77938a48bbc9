import type { Logger } from 'pino';
import { writeEstargzLayer } from '../oci/estargz.js';
import { writeImage } from '../oci/image.js';
import { mapConcurrent } from '../util/concurrency.js';
import type { Descriptor } from '../oci/types.js';
import { DERIVED_GZIP_LEVEL, DerivedGenerator, type UpstreamImage } from './derived.js';

const LAYER_CONCURRENCY = 2;

/**
 * `estargz`: an upstream image with every layer rewritten as eStargz, so snapshotters
 * can pull it lazily while every other client pulls it as ordinary gzip layers.
 */
export class EstargzGenerator extends DerivedGenerator {
  readonly service = 'estargz';

  /** Layer annotations (the TOC digest) exist only in OCI manifests. */
  protected indexFamily(): 'oci' {
    return 'oci';
  }

  protected async transform(image: UpstreamImage, _log: Logger): Promise<Descriptor> {
    // Two layers at a time: each conversion is mostly decompression and compression on
    // the thread pool, so a second one keeps another core busy.
    const layers = await mapConcurrent(image.manifest.layers, LAYER_CONCURRENCY, async (layer) => {
      const written = await writeEstargzLayer(this.store, await image.openLayer(layer), { gzipLevel: DERIVED_GZIP_LEVEL, budget: image.budget });
      return { ...written, annotations: written.annotations };
    });
    const { rootfs: _rootfs, ...config } = image.config;
    return writeImage(this.store, { family: 'oci', config, layers });
  }
}
