/**
 * An opened image as both proxies present it: an index resolved to one platform's image,
 * the manifest in OCI form with the original digest, the config, and the layer list.
 * Docker schema 2 images are converted the way containers/image converts them (see
 * oci-conversion.ts), and the converted config is served for its own digest, so the
 * converted manifest is whole.
 */
import { Readable } from 'node:stream';
import { MediaType, isIndexType } from '../oci/mediatypes.js';
import type { ImageIndex, ImageManifest, Platform, StoredManifest } from '../oci/types.js';
import { selectPlatform } from '../registry/platform.js';
import { dockerToOciManifest, goImageConfig, goRuntimeConfig } from './oci-conversion.js';
import { readBlobBytes, type ImageSource, type SourceBlob } from './image-source.js';

export interface LayerInfo {
  digest: string;
  size: number;
  media_type: string;
}

interface Resolved {
  /** The platform's image manifest as the source has it. */
  manifest: StoredManifest;
  parsed: ImageManifest;
  /** The config blob's bytes as the source has them. */
  config: Buffer;
  /** The OCI manifest handed out, and the config its descriptor names. */
  oci: { bytes: Buffer; config: Buffer; configDigest: string };
}

/** This machine's platform in OCI terms (`process.arch` names differ). */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', ia32: '386', ppc64: 'ppc64le' };
  const architecture = arch[process.arch] ?? process.arch;
  return architecture === 'arm' ? { os: 'linux', architecture, variant: 'v7' } : { os: process.platform === 'win32' ? 'windows' : process.platform, architecture };
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new Error(`${what} is not JSON`);
  }
}

export class ProxyImage {
  private resolving?: Promise<Resolved>;

  constructor(
    readonly source: ImageSource,
    private readonly platform: Platform,
  ) {}

  /** Resolves once, like skopeo's cached target manifest; a failure is not kept. */
  private resolved(): Promise<Resolved> {
    this.resolving ??= this.resolve().catch((err: unknown) => {
      this.resolving = undefined;
      throw err;
    });
    return this.resolving;
  }

  private async resolve(): Promise<Resolved> {
    let manifest = this.source.top;
    if (isIndexType(manifest.mediaType)) {
      const index = parseJson<ImageIndex>(manifest.bytes, `the index of ${this.source.name}`);
      const chosen = selectPlatform(Array.isArray(index.manifests) ? index.manifests : [], this.platform);
      if (!chosen) {
        const kind = manifest.mediaType === MediaType.dockerManifestList ? 'manifest list' : 'image index';
        throw new Error(`no image found in ${kind} for architecture "${this.platform.architecture}", variant "${this.platform.variant ?? ''}", OS "${this.platform.os}"`);
      }
      manifest = await this.source.manifest(chosen.digest);
    }
    if (manifest.mediaType === MediaType.dockerSchema1 || manifest.mediaType === MediaType.dockerSchema1Signed) {
      throw new Error(`unsupported legacy manifest MIME type: ${manifest.mediaType}`);
    }
    if (manifest.mediaType !== MediaType.ociManifest && manifest.mediaType !== MediaType.dockerManifest) {
      throw new Error(`unsupported manifest MIME type: ${manifest.mediaType}`);
    }
    const parsed = parseJson<ImageManifest>(manifest.bytes, `manifest ${manifest.digest} of ${this.source.name}`);
    if (!parsed.config || typeof parsed.config.digest !== 'string' || !Array.isArray(parsed.layers)) {
      throw new Error(`manifest ${manifest.digest} of ${this.source.name} has no config or layers`);
    }
    const config = await readBlobBytes(this.source, parsed.config.digest, parsed.config.size);
    let oci: Resolved['oci'];
    if (manifest.mediaType === MediaType.dockerManifest) {
      const converted = dockerToOciManifest(parsed, config);
      oci = { bytes: converted.bytes, config: converted.config, configDigest: (parseJson<ImageManifest>(converted.bytes, 'converted manifest')).config.digest };
    } else {
      oci = { bytes: manifest.bytes, config, configDigest: parsed.config.digest };
    }
    return { manifest, parsed, config, oci };
  }

  /** The OCI manifest and the digest of the manifest it came from. */
  async manifest(): Promise<{ digest: string; bytes: Buffer }> {
    const r = await this.resolved();
    return { digest: r.manifest.digest, bytes: r.oci.bytes };
  }

  /** The config the OCI manifest names (the source's bytes for an OCI image). */
  async config(): Promise<Buffer> {
    return (await this.resolved()).oci.config;
  }

  /** skopeo's GetFullConfig: the config decoded and encoded again as Go does. */
  async fullConfig(): Promise<Buffer> {
    return goImageConfig((await this.resolved()).config);
  }

  /** skopeo's GetConfig: only the runtime part of that. */
  async runtimeConfig(): Promise<Buffer> {
    return goRuntimeConfig((await this.resolved()).config);
  }

  /** The layers as the source's manifest lists them (its media types, not converted ones). */
  async layerInfo(): Promise<LayerInfo[]> {
    return (await this.resolved()).parsed.layers.map((l) => ({ digest: l.digest, size: l.size, media_type: l.mediaType }));
  }

  /** A blob of the image; the converted config is served from memory for its digest. */
  async blob(digest: string, size?: number): Promise<SourceBlob> {
    const resolved = this.resolving ? await this.resolving.catch(() => undefined) : undefined;
    if (resolved && digest === resolved.oci.configDigest && resolved.oci.config !== resolved.config) {
      if (size !== undefined && size !== resolved.oci.config.length) throw new Error(`blob ${digest} is ${resolved.oci.config.length} bytes, not ${size}`);
      return { stream: Readable.from([resolved.oci.config]), size: resolved.oci.config.length };
    }
    return this.source.blob(digest, size);
  }
}
