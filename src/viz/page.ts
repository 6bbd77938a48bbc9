import { humanSize } from './format.js';
import type { ImageGraph } from './graph.js';
import { MAX_IMAGES } from './references.js';

/** Prefilled so the page shows something useful at once: slim images that share Debian's base layer. */
export const EXAMPLE_IMAGES = `# One image reference per line; # starts a comment.
debian:bookworm-slim
python:3.12-slim-bookworm
node:20-bookworm-slim
`;

function escapeHTML(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface VizPageOptions {
  /** `''` on the viz host, `/viz` in path form: where the form and API links point. */
  base: string;
  /** The text area's content. */
  images: string;
  platform: string;
  graph?: ImageGraph;
  /** The `<svg>` element of the graph. */
  svg?: string;
  /** What was wrong with the request, when it could not be drawn at all. */
  problem?: string;
}

/** The viz page: the form, and below it the graph of what was submitted. A plain GET form; no script. */
export function vizPage(options: VizPageOptions): string {
  const { base, graph } = options;
  let result = '';
  if (options.problem) result += `<p class="problem" role="alert">${escapeHTML(options.problem)}</p>`;
  if (graph) {
    const total = graph.images.reduce((sum, image) => sum + image.totalSize, 0);
    const layerCount = graph.nodes.filter((n) => n.kind === 'layer').length;
    const shared = graph.nodes.filter((n) => n.kind === 'layer' && n.images!.length > 1).length;
    result += `<section id="result"><h2>Graph</h2>`;
    result += `<p id="summary">${graph.images.length} image${graph.images.length === 1 ? '' : 's'} for ${escapeHTML(graph.platform)}, ${layerCount} distinct layer${layerCount === 1 ? '' : 's'} (${shared} shared): ${escapeHTML(humanSize(total))} pulled one by one, ${escapeHTML(humanSize(graph.distinctLayerSize))} with shared layers stored once.</p>`;
    if (graph.errors.length > 0) {
      const items = graph.errors.map((e) => `<li><code>${escapeHTML(e.reference)}</code>: ${escapeHTML(e.error)}</li>`).join('');
      result += `<div id="errors" role="alert"><p>Not drawn:</p><ul>${items}</ul></div>`;
    }
    if (options.svg) result += `<div id="graph">${options.svg}</div>`;
    const query = new URLSearchParams([...graph.images.map((i) => ['image', i.reference]), ...graph.errors.map((e) => ['image', e.reference]), ['platform', graph.platform]]);
    result += `<p>For scripts: <a href="${escapeHTML(`${base}/graph.svg?${query}`)}">graph.svg</a>, <a href="${escapeHTML(`${base}/graph.json?${query}`)}">graph.json</a></p></section>`;
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kontain: viz</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
textarea{width:100%;max-width:48rem;font-family:ui-monospace,monospace;font-size:.9rem}
.problem,#errors{color:#b00020}#graph{overflow:auto;border:1px solid #ddd;padding:.5rem}#graph svg{max-width:100%;height:auto}</style></head>
<body><h1>kontain: viz</h1>
<p>Which layers do these images share? Each image is drawn on its stack of layers, down to <code>scratch</code>; a layer several images share is drawn once. At most ${MAX_IMAGES} images; an index is drawn for one platform.</p>
<form method="get" action="${escapeHTML(base || '/')}">
<p><label for="images">Images</label><br><textarea id="images" name="images" rows="8" spellcheck="false">${escapeHTML(options.images)}</textarea></p>
<p><label>Platform <input id="platform" name="platform" value="${escapeHTML(options.platform)}" size="16"></label>
<button id="draw" type="submit">Draw the graph</button></p>
</form>
${result}
</body></html>
`;
}
