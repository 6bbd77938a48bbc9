import type { Platform } from '../oci/types.js';
import { formatPlatform, humanSize, shortDigest } from './format.js';
import type { ImageGraphSource, ResolveContext, ResolvedImage } from './source.js';
import { mapConcurrent } from '../util/concurrency.js';
import { ClientGone, VizLimitError, MAX_GRAPH_EDGES, MAX_GRAPH_NODES } from './limits.js';

/** What became of one requested reference. */
export type ImageOutcome = { reference: string; image: ResolvedImage } | { reference: string; error: string };

export interface GraphNode {
  /** Safe as a DOT name and an SVG id: `scratch`, `image-<n>`, or layerNodeId(digest). */
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

/**
 * Resolves every reference, in order; a failure becomes that reference's error, never the
 * whole request's — except a VizLimitError (the request is refused) and the client leaving
 * (`signal`), which end it at once.
 */
export async function resolveImages(
  source: ImageGraphSource,
  references: string[],
  platform: Platform,
  options: ResolveOptions = {},
  context: ResolveContext = {},
): Promise<ImageOutcome[]> {
  const { concurrency = 4, timeoutMs = 30_000 } = options;
  const { signal } = context;
  return mapConcurrent(references, concurrency, async (reference): Promise<ImageOutcome> => {
    if (signal?.aborted) throw new ClientGone();
    try {
      return { reference, image: await withDeadline(source.resolve(reference, platform, context), timeoutMs, reference, signal) };
    } catch (err) {
      if (err instanceof VizLimitError || err instanceof ClientGone) throw err;
      return { reference, error: err instanceof Error ? err.message : String(err) };
    }
  });
}

/** `work`, or a rejection when it takes longer than `ms` or the client leaves (the work itself is left to finish). */
async function withDeadline<T>(work: Promise<T>, ms: number, reference: string, signal: AbortSignal | undefined): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${reference} did not resolve within ${ms / 1000} s; its registry may be slow or down`)), ms);
    onAbort = () => reject(new ClientGone());
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

export const SCRATCH_ID = 'scratch';

/**
 * The node id of a layer: `layer-` and the digest with `:` as `-` (`layer-sha256-<hex>`),
 * every other character outside [A-Za-z0-9] written as `_` and its two hex digits. The
 * mapping can be undone, so distinct digests never share an id, and a digest's id does not
 * depend on what else is in the graph. It holds no `:` (edge ids use it as separator).
 */
export function layerNodeId(digest: string): string {
  return `layer-${digest.replace(/[^A-Za-z0-9]/g, (c) => (c === ':' ? '-' : `_${c.charCodeAt(0).toString(16).padStart(2, '0')}`))}`;
}

/**
 * The layer graph of the resolved images: one node per distinct layer digest, so a layer
 * that several images share is one node with an edge from each layer that sits on it.
 * Throws VizLimitError as soon as it would exceed MAX_GRAPH_NODES or MAX_GRAPH_EDGES.
 */
export function buildGraph(outcomes: ImageOutcome[], platform: Platform): ImageGraph {
  const nodes: GraphNode[] = [{ id: SCRATCH_ID, kind: 'scratch', label: 'scratch' }];
  const layers = new Map<string, GraphNode>();
  const edges = new Map<string, GraphEdge>();
  const images: GraphImage[] = [];
  const errors: ImageGraph['errors'] = [];

  const addNode = (node: GraphNode) => {
    if (nodes.length >= MAX_GRAPH_NODES) throw new VizLimitError(`the graph would have more than ${MAX_GRAPH_NODES} nodes (images and distinct layers); viz draws at most ${MAX_GRAPH_NODES}: draw fewer images`);
    nodes.push(node);
  };
  const addEdge = (from: string, to: string, kind: GraphEdge['kind']) => {
    const key = `${from} ${to}`;
    if (edges.has(key)) return;
    if (edges.size >= MAX_GRAPH_EDGES) throw new VizLimitError(`the graph would have more than ${MAX_GRAPH_EDGES} edges; viz draws at most ${MAX_GRAPH_EDGES}: draw fewer images`);
    edges.set(key, { from, to, kind });
  };
  const layerNode = (digest: string, size: number): GraphNode => {
    let node = layers.get(digest);
    if (!node) {
      node = { id: layerNodeId(digest), kind: 'layer', label: `${shortDigest(digest)}\n${humanSize(size)}`, digest, size, images: [] };
      addNode(node);
      layers.set(digest, node);
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
    const detail = [humanSize(image.totalSize), `${image.layers.length} layer${image.layers.length === 1 ? '' : 's'}`, image.platform].filter(Boolean).join(', ');
    addNode({ id, kind: 'image', label: `${outcome.reference}\n${detail}`, digest: image.digest, size: image.totalSize, reference: outcome.reference });
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
