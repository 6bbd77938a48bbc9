import { MediaType, type FormatFamily, isIndexType } from '../oci/mediatypes.js';

/** The manifest media types a client accepts, in the order it listed them. */
export class AcceptedTypes {
  private constructor(readonly types: string[], readonly any: boolean) {}

  /**
   * Reads every `Accept` line (clients send one per type or one comma-joined line),
   * dropping parameters such as q= the way distribution does.
   */
  static fromHeaders(accept: string | string[] | undefined): AcceptedTypes {
    const lines = accept === undefined ? [] : Array.isArray(accept) ? accept : [accept];
    const types = lines
      .flatMap((line) => line.split(','))
      .map((part) => part.split(';')[0]!.trim().toLowerCase())
      .filter((part) => part.length > 0);
    // No Accept at all only comes from ancient clients: serve what is stored.
    return new AcceptedTypes(types, types.length === 0 || types.includes('*/*'));
  }

  static all(): AcceptedTypes {
    return new AcceptedTypes([], true);
  }

  accepts(mediaType: string): boolean {
    return this.any || this.types.includes(mediaType);
  }

  acceptsIndex(): boolean {
    return this.any || this.types.some(isIndexType);
  }

  /**
   * The media type family to build in: whichever of OCI and Docker image manifests the
   * client lists first; OCI when it states no preference.
   */
  preferredFamily(): FormatFamily {
    for (const type of this.types) {
      if (type === MediaType.ociManifest || type === MediaType.ociIndex) return 'oci';
      if (type === MediaType.dockerManifest || type === MediaType.dockerManifestList) return 'docker';
    }
    return 'oci';
  }
}
