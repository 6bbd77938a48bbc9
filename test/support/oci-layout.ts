import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ImageIndex, ImageManifest } from '../../src/oci/types.js';

/** Reads an OCI image layout as written by skopeo: index, manifests and blob paths. */
export class OciLayout {
  constructor(readonly dir: string) {}

  blobPath(digest: string): string {
    const [algorithm, hex] = digest.split(':');
    return path.join(this.dir, 'blobs', algorithm!, hex!);
  }

  async blob(digest: string): Promise<Buffer> {
    return readFile(this.blobPath(digest));
  }

  async index(): Promise<ImageIndex> {
    return JSON.parse(await readFile(path.join(this.dir, 'index.json'), 'utf8')) as ImageIndex;
  }

  /** The manifest a tag (org.opencontainers.image.ref.name) points at. */
  async manifestDigest(tag: string): Promise<string> {
    const entry = (await this.index()).manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
    if (!entry) throw new Error(`tag ${tag} not in ${this.dir}`);
    return entry.digest;
  }

  async manifest(tag: string): Promise<ImageManifest> {
    return JSON.parse((await this.blob(await this.manifestDigest(tag))).toString('utf8')) as ImageManifest;
  }
}
