import type { Logger } from 'pino';
import { writeEstargzLayer } from '../oci/estargz.js';
import { writeImage } from '../oci/image.js';
import type { Descriptor } from '../oci/types.js';
import { DerivedGenerator, type UpstreamImage } from './derived.js';

/**
 * `estargz`: an upstream image with every layer rewritten as eStargz, so snapshotters
 * can pull it lazily while every other client pulls it as ordinary gzip layers.
 */
export class EstargzGenerator extends DerivedGenerator {
  readonly service = 'estargz';
  readonly summary = 'An upstream image with every layer rewritten as eStargz (lazy-pullable gzip with a table of contents); it still pulls as an ordinary image anywhere.';
  readonly examples = ['estargz/busybox', 'estargz/ghcr.io/homebrew/core/hello:latest'];

  /** Layer annotations (the TOC digest) exist only in OCI manifests. */
  protected indexFamily(): 'oci' {
    return 'oci';
  }

  protected async transform(image: UpstreamImage, _log: Logger): Promise<Descriptor> {
    const layers = [];
    for (const layer of image.manifest.layers) {
      const written = await writeEstargzLayer(this.store, await image.openLayer(layer));
      layers.push({ ...written, annotations: written.annotations });
    }
    const { rootfs: _rootfs, ...config } = image.config;
    return writeImage(this.store, { family: 'oci', config, layers });
  }
}
