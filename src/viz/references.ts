import { parseReference, formatReference } from '../remote/reference.js';

/** More images than this in one request is refused: each one costs upstream requests. */
export const MAX_IMAGES = 20;

/** A request for more images than a graph may have; the router answers 400. */
export class TooManyImagesError extends Error {
  override name = 'TooManyImagesError';
  constructor(readonly count: number, readonly max: number) {
    super(`at most ${max} images per graph, and ${count} were given: remove some and try again`);
  }
}

/**
 * The references in a text area (one per line, `#` to the end of a line is a comment —
 * `#` cannot occur in a reference) and in repeated `image=` parameters, in order, without
 * blanks or duplicates. `busybox` and `docker.io/library/busybox:latest` are the same image,
 * so duplicates are found on the normalised form; an unparsable one is kept as typed so
 * the graph can report its error.
 */
export function parseImageList(inputs: string | string[], max = MAX_IMAGES): string[] {
  const lines = (Array.isArray(inputs) ? inputs : [inputs]).flatMap((text) => text.split(/\r\n|\r|\n/));
  const seen = new Set<string>();
  const references: string[] = [];
  for (const line of lines) {
    const hash = line.indexOf('#');
    const reference = (hash < 0 ? line : line.slice(0, hash)).trim();
    if (!reference) continue;
    const key = normalise(reference);
    if (seen.has(key)) continue;
    seen.add(key);
    references.push(reference);
  }
  if (references.length > max) throw new TooManyImagesError(references.length, max);
  return references;
}

function normalise(reference: string): string {
  try {
    return formatReference(parseReference(reference));
  } catch {
    return reference;
  }
}
