import { createGunzip, type ZlibOptions } from 'node:zlib';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.js';
import type { RegistryClient } from '../remote/client.js';
import { formatReference, type Reference } from '../remote/reference.js';
import type { ContentStore } from '../content/store.js';
import { MediaType, familyOf, isIndexType, type FormatFamily } from '../oci/mediatypes.js';
import { writeIndex } from '../oci/image.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../oci/types.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import { upstreamFailure, upstreamReference } from './upstream.js';

/**
 * gzip level of every layer a derived host writes. A client is waiting for the pull, so
 * speed wins over a few percent of size: level 1, as go-containerregistry writes layers.
 */
export const DERIVED_GZIP_LEVEL = 1;

/** One upstream image, as a derived host's transform sees it. */
export interface UpstreamImage {
  ref: Reference;
  manifest: ImageManifest;
  family: FormatFamily;
  config: ImageConfig;
  /** The layer's uncompressed tar, streamed from upstream and verified as it arrives. */
  openLayer(layer: Descriptor): Promise<Readable>;
}

/**
 * The shared part of hosts that make a new image from an upstream one (flatten, estargz):
 * resolve the tag upstream with a HEAD, and build once per upstream digest; an index is
 * transformed image by image into a new index with the same platforms.
 */
export abstract class DerivedGenerator implements Generator {
  abstract readonly service: string;
  abstract readonly summary: string;
  abstract readonly examples: string[];
  protected readonly store: ContentStore;
  private readonly domain: string;

  constructor(context: GeneratorContext, protected readonly client: RegistryClient) {
    this.store = context.store;
    this.domain = context.config.domain;
  }

  /** Makes the derived image of one upstream image; returns its manifest descriptor. */
  protected abstract transform(image: UpstreamImage, log: Logger): Promise<Descriptor>;

  /** The media type family of the index written over transformed images. */
  protected abstract indexFamily(upstream: FormatFamily): FormatFamily;

  async manifest(request: TagRequest): Promise<Descriptor> {
    const ref = upstreamReference(this.service, this.domain, request.repository, { tag: request.tag });
    try {
      const top = await this.client.resolve(ref);
      return await this.store.cached(this.service, top.digest, () => this.build(ref, top.digest, request.log));
    } catch (err) {
      throw upstreamFailure(err) ?? err;
    }
  }

  private async build(ref: Reference, digest: string, log: Logger): Promise<Descriptor> {
    const started = Date.now();
    const top = await this.client.getManifest({ ...ref, tag: undefined, digest });
    let result: Descriptor;
    if (isIndexType(top.mediaType)) {
      const index = JSON.parse(top.bytes.toString('utf8')) as ImageIndex;
      const children: Descriptor[] = [];
      for (const child of index.manifests) {
        // Attestation manifests (platform unknown/unknown) describe the original, not ours.
        if (child.platform?.os === 'unknown' || isIndexType(child.mediaType)) continue;
        const built = await this.transformDigest(ref, child.digest, log);
        children.push({ mediaType: built.mediaType, digest: built.digest, size: built.size, ...(child.platform ? { platform: child.platform } : {}) });
      }
      if (children.length === 0) throw new RegistryError('MANIFEST_UNKNOWN', `${formatReference(ref)} is an index with no platform images to ${this.service}`);
      result = await writeIndex(this.store, this.indexFamily(familyOf(top.mediaType)), children);
    } else {
      result = await this.transformDigest(ref, digest, log);
    }
    log.info({ service: this.service, upstream: formatReference(ref), upstreamDigest: digest, digest: result.digest, ms: Date.now() - started }, `${this.service} built`);
    return { mediaType: result.mediaType, digest: result.digest, size: result.size };
  }

  private async transformDigest(ref: Reference, digest: string, log: Logger): Promise<Descriptor> {
    const fetched = await this.client.getManifest({ ...ref, tag: undefined, digest });
    if (fetched.mediaType !== MediaType.ociManifest && fetched.mediaType !== MediaType.dockerManifest) {
      throw new RegistryError('MANIFEST_UNKNOWN', `${formatReference(ref)}@${digest} is ${fetched.mediaType}, not an image manifest`);
    }
    const manifest = JSON.parse(fetched.bytes.toString('utf8')) as ImageManifest;
    const config = JSON.parse((await this.client.blobBytes(ref, manifest.config)).toString('utf8')) as ImageConfig;
    return this.transform(
      {
        ref,
        manifest,
        family: familyOf(fetched.mediaType),
        config,
        openLayer: (layer) => this.openLayer(ref, layer),
      },
      log,
    );
  }

  private async openLayer(ref: Reference, layer: Descriptor): Promise<Readable> {
    const { stream } = await this.client.blob(ref, layer.digest, { size: layer.size });
    switch (layer.mediaType) {
      case MediaType.ociLayerGzip:
      case MediaType.dockerLayerGzip:
      case 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip':
      case 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': {
        // Big output chunks and a few MB of read-ahead: fewer callbacks, and decompression
        // goes on while the transform is busy with what came before.
        const gunzip = createGunzip({ chunkSize: 256 * 1024, readableHighWaterMark: 4 * 1024 * 1024 } as ZlibOptions);
        stream.on('error', (err) => gunzip.destroy(err));
        return stream.pipe(gunzip);
      }
      case MediaType.ociLayerTar:
      case MediaType.dockerLayerTar:
        return stream;
      default:
        stream.destroy();
        throw new RegistryError('MANIFEST_UNKNOWN', `layer ${layer.digest} is ${layer.mediaType}; ${this.service} reads gzip and uncompressed tar layers only`);
    }
  }
}
