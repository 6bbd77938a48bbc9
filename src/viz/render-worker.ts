/**
 * Runs in a worker thread (a piscina pool, see render.ts): Graphviz compiled to
 * WebAssembly lays out and draws one graph. Layout is synchronous and can take minutes on
 * a hostile graph, so it must never run on the main thread, where it would stop every
 * other request; here the main thread can terminate it.
 */
import type { MessagePort } from 'node:worker_threads';
import { instance, type Viz } from '@viz-js/viz';

let viz: Promise<Viz> | undefined;

export interface RenderTask {
  dot: string;
  /** Told `'layout'` when Graphviz starts on this graph (from then on only terminating the thread stops it). */
  progress?: MessagePort;
}

/** DOT → a standalone SVG document. Throws with Graphviz's own messages when it fails. */
export default async function renderSvg(task: RenderTask | string): Promise<string> {
  const { dot, progress } = typeof task === 'string' ? { dot: task, progress: undefined } : task;
  viz ??= instance();
  const graphviz = await viz;
  progress?.postMessage('layout');
  progress?.close();
  const result = graphviz.render(dot, { format: 'svg', engine: 'dot' });
  if (result.status !== 'success') throw new Error(`graphviz failed: ${result.errors.map((e) => e.message).join('; ')}`);
  return result.output;
}
