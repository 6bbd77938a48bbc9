import type { Platform } from '../oci/types.js';
import { formatPlatform, humanSize, shortDigest } from './format.js';
import type { ImageGraphSource, ResolvedImage } from './source.js';
import { mapConcurrent } from '../util/concurrency.js';

/** What became of one requested reference. */
export type ImageOutcome = { reference: string; image: ResolvedImage } | { reference: string; error: string };

export interface GraphNode {
  /** Safe as a DOT name and an SVG id: `scratch`, `layer-sha256-<hex>`, `image-<n>`. */
  id: string;
  kind: 'scratch' | 'layer' | 'image';
  label: string;
  digest?: string;
  /** Layer: its compressed size; image: its total. */
  size?: number;
  /** Image: the reference as it was asked for. */
  reference?: string;
  /** Layer: the references of the images that contain it. */
  images?: string[];
}

/** `from` sits on `to`: a layer on the one below it (or scratch), an image on its top layer. */
export interface GraphEdge {
  from: string;
  to: string;
  kind: 'layer' | 'image';
}

export interface GraphImage {
  /** As asked for. */
  reference: string;
  /** Normalised: `docker.io/library/busybox:latest`. */
  resolved: string;
  digest: string;
  platform?: string;
  node: string;
  /** Layer digests, bottom first. */
  layers: string[];
  totalSize: number;
}

export interface ImageGraph {
  platform: string;
  images: GraphImage[];
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Bytes of all distinct layers: what storing every image costs when shared layers are kept once. */
  distinctLayerSize: number;
  errors: Array<{ reference: string; error: string }>;
}

export interface ResolveOptions {
  /** Upstream requests in flight at once. */
  concurrency?: number;
  /** Per image; one slow registry must not hold the whole page. */
  timeoutMs?: number;
}

/** Resolves every reference, in order; a failure becomes that reference's error, never the whole request's. */
export async function resolveImages(source: ImageGraphSource, references: string[], platform: Platform, options: ResolveOptions = {}): Promise<ImageOutcome[]> {
  const { concurrency = 4, timeoutMs = 30_000 } = options;
  return mapConcurrent(references, concurrency, async (reference): Promise<ImageOutcome> => {
    try {
      return { reference, image: await withTimeout(source.resolve(reference, platform), timeoutMs, reference) };
    } catch (err) {
      return { reference, error: err instanceof Error ? err.message : String(err) };
    }
  });
}

async function withTimeout<T>(work: Promise<T>, ms: number, reference: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${reference} did not resolve within ${ms / 1000} s; its registry may be slow or down`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export const SCRATCH_ID = 'scratch';

/**
 * The layer graph of the resolved images: one node per distinct layer digest, so a layer
 * that several images share is one node with an edge from each layer that sits on it.
 */
export function buildGraph(outcomes: ImageOutcome[], platform: Platform): ImageGraph {
  const nodes: GraphNode[] = [{ id: SCRATCH_ID, kind: 'scratch', label: 'scratch' }];
  const layers = new Map<string, GraphNode>();
  const ids = new Set<string>([SCRATCH_ID]);
  const edges = new Map<string, GraphEdge>();
  const images: GraphImage[] = [];
  const errors: ImageGraph['errors'] = [];

  const addEdge = (from: string, to: string, kind: GraphEdge['kind']) => {
    const key = `${from} ${to}`;
    if (!edges.has(key)) edges.set(key, { from, to, kind });
  };
  const layerNode = (digest: string, size: number): GraphNode => {
    let node = layers.get(digest);
    if (!node) {
      // Digests are checked by the source, but an id must stay unique and inert whatever it gets.
      let id = `layer-${digest.replace(/[^a-zA-Z0-9]+/g, '-')}`;
      while (ids.has(id)) id += '-';
      ids.add(id);
      node = { id, kind: 'layer', label: `${shortDigest(digest)}\n${humanSize(size)}`, digest, size, images: [] };
      layers.set(digest, node);
      nodes.push(node);
    }
    return node;
  };

  for (const outcome of outcomes) {
    if ('error' in outcome) {
      errors.push({ reference: outcome.reference, error: outcome.error });
      continue;
    }
    const { image } = outcome;
    let below = SCRATCH_ID;
    for (const layer of image.layers) {
      const node = layerNode(layer.digest, layer.size);
      if (!node.images!.includes(outcome.reference)) node.images!.push(outcome.reference);
      addEdge(node.id, below, 'layer');
      below = node.id;
    }
    const id = `image-${images.length + 1}`;
    ids.add(id);
    const detail = [humanSize(image.totalSize), `${image.layers.length} layer${image.layers.length === 1 ? '' : 's'}`, image.platform].filter(Boolean).join(', ');
    nodes.push({ id, kind: 'image', label: `${outcome.reference}\n${detail}`, digest: image.digest, size: image.totalSize, reference: outcome.reference });
    addEdge(id, below, 'image');
    images.push({
      reference: outcome.reference,
      resolved: image.reference,
      digest: image.digest,
      ...(image.platform ? { platform: image.platform } : {}),
      node: id,
      layers: image.layers.map((l) => l.digest),
      totalSize: image.totalSize,
    });
  }

  return {
    platform: formatPlatform(platform),
    images,
    nodes,
    edges: [...edges.values()],
    distinctLayerSize: [...layers.values()].reduce((sum, n) => sum + n.size!, 0),
    errors,
  };
}
