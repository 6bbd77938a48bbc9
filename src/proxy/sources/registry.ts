/** `docker://` references: an upstream registry through kontain's registry client. */
import { UpstreamError, type RegistryClient, type Reference } from '../../remote/index.js';
import type { StoredManifest } from '../../oci/types.js';
import { ImageNotFound, type ImageSource, type SourceBlob } from '../image-source.js';

export class RegistryImageSource implements ImageSource {
  private constructor(
    readonly name: string,
    readonly top: StoredManifest,
    private readonly client: RegistryClient,
    private readonly ref: Reference,
  ) {}

  /** Fetches the manifest now, as containers/image does when it opens an image. */
  static async open(client: RegistryClient, ref: Reference, name: string): Promise<RegistryImageSource> {
    try {
      return new RegistryImageSource(name, await client.getManifest(ref), client, ref);
    } catch (err) {
      // The registry said this tag or digest does not exist (not: no access, no answer).
      if (err instanceof UpstreamError && err.code === 'MANIFEST_UNKNOWN') throw new ImageNotFound(err.message);
      throw err;
    }
  }

  manifest(digest: string): Promise<StoredManifest> {
    return this.client.getManifest({ registry: this.ref.registry, repository: this.ref.repository, digest });
  }

  async blob(digest: string, size?: number): Promise<SourceBlob> {
    const { stream, size: length } = await this.client.blob(this.ref, digest, { size });
    return { stream, size: length };
  }

  async close(): Promise<void> {}
}
