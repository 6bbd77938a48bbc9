import { BoundedMap } from '../util/bounded-map.js';
import { MediaType, type FormatFamily, isIndexType } from '../oci/mediatypes.js';

/**
 * Accept lines read before: clients send a handful of distinct ones, and reading one again
 * was a measurable share of a ready manifest answer (bench/static). Long lines are read
 * every time rather than kept.
 */
const READ = new BoundedMap<string, AcceptedTypes>(256);
const MAX_KEPT_LINE = 1024;

/** The manifest media types a client accepts, in the order it listed them. */
export class AcceptedTypes {
  private constructor(readonly types: readonly string[], readonly any: boolean) {}

  /**
   * Reads every `Accept` line (clients send one per type or one comma-joined line),
   * dropping parameters such as q= the way distribution does.
   */
  static fromHeaders(accept: string | string[] | undefined): AcceptedTypes {
    if (typeof accept !== 'string' || accept.length > MAX_KEPT_LINE) return AcceptedTypes.read(accept);
    let read = READ.get(accept);
    if (!read) {
      read = AcceptedTypes.read(accept);
      READ.set(accept, read);
    }
    return read;
  }

  private static read(accept: string | string[] | undefined): AcceptedTypes {
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
