import type { Logger } from 'pino';
import { flattenLayers } from '../oci/flatten.js';
import { writeGzipLayer } from '../oci/layer.js';
import { writeImage } from '../oci/image.js';
import { formatReference } from '../remote/reference.js';
import type { FormatFamily } from '../oci/mediatypes.js';
import type { Descriptor, ImageConfig } from '../oci/types.js';
import { DERIVED_GZIP_LEVEL, DerivedGenerator, type UpstreamImage } from './derived.js';

/** `flatten`: an upstream image squashed to one layer, runtime config kept. */
export class FlattenGenerator extends DerivedGenerator {
  readonly service = 'flatten';

  protected indexFamily(upstream: FormatFamily): FormatFamily {
    return upstream;
  }

  protected async transform(image: UpstreamImage, _log: Logger): Promise<Descriptor> {
    const tar = flattenLayers(
      image.manifest.layers.map((l) => () => image.openLayer(l)),
      { budget: image.budget },
    );
    // Nobody waits any more: stop reading and writing, which removes the spool and the upload.
    const stop = () => tar.destroy(image.signal.reason instanceof Error ? image.signal.reason : new Error('build cancelled'));
    image.signal.addEventListener('abort', stop, { once: true });
    let layer;
    try {
      layer = await writeGzipLayer(this.store, tar, { gzipLevel: DERIVED_GZIP_LEVEL });
    } finally {
      image.signal.removeEventListener('abort', stop);
    }
    const { rootfs: _rootfs, history: _history, ...kept } = image.config;
    const config: Partial<ImageConfig> & Pick<ImageConfig, 'architecture' | 'os'> = {
      ...kept,
      architecture: image.config.architecture,
      os: image.config.os,
      history: [
        {
          ...(image.config.created ? { created: image.config.created } : {}),
          created_by: `kontain flatten of ${formatReference({ ...image.ref, tag: undefined })}: ${image.manifest.layers.length} layers squashed into one`,
        },
      ],
    };
    return writeImage(this.store, { family: image.family, config, layers: [layer] });
  }
}
