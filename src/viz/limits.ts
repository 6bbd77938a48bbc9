/**
 * What one viz request may cost. Past these the request is refused with 422 and a message
 * naming the limit: an image's layer list comes from any registry anyone names, and
 * Graphviz's work grows faster than the graph (README, Limits).
 */

/** A manifest or index larger than this is not read (a 500-layer manifest is about 100 kB). */
export const MAX_VIZ_MANIFEST_BYTES = 1024 * 1024;

/** Nodes of one graph: images, distinct layers and scratch. */
export const MAX_GRAPH_NODES = 1000;

/** Edges of one graph: each distinct (layer, layer below) pair and one per image. */
export const MAX_GRAPH_EDGES = 2000;

/** Requests waiting for a render slot beyond the ones rendering; more are answered 503. */
export const MAX_WAITING_RENDERS = 16;

/** A graph viz will not draw; the router answers 422 with the message. */
export class VizLimitError extends Error {
  override name = 'VizLimitError';
}

/** Every render slot is taken and the queue is full; the router answers 503. */
export class VizBusyError extends Error {
  override name = 'VizBusyError';
}

/** Work for a request stopped because its client left; nothing is sent. */
export class ClientGone extends Error {
  override name = 'ClientGone';
  constructor() {
    super('the client went away');
  }
}
