import { COLORS } from './dot.js';
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

/** What the shapes and colours of the graph mean, drawn with the graph's own colours. */
function legend(): string {
  const item = (swatch: string, text: string) => `<li><span class="swatch ${swatch}" aria-hidden="true"></span> ${text}</li>`;
  return `<div id="legend"><h3>Legend</h3><ul>
${item('image', 'an image as asked for: its reference, total size, layer count and platform')}
${item('shared', 'a layer that two or more of these images share (stored and pulled once)')}
${item('layer', 'a layer that only one of these images has; each layer shows the start of its digest and its compressed size')}
${item('scratch', '<code>scratch</code>: the empty start every image is built on')}
${item('image-edge', 'an image sits on its top layer')}
${item('layer-edge', 'a layer sits on the layer below it')}
</ul></div>`;
}

const LEGEND_STYLE = `#legend ul{list-style:none;padding:0;margin:.25rem 0 1rem}#legend li{margin:.2rem 0}
.swatch{display:inline-block;width:2.2rem;height:1rem;vertical-align:middle;border:1px solid ${COLORS.line};box-sizing:border-box}
.swatch.image{background:${COLORS.image};border-width:2px}.swatch.shared{background:${COLORS.shared};border-radius:50%}
.swatch.layer{background:${COLORS.layer};border-radius:50%}.swatch.scratch{background:${COLORS.scratch};border-style:dashed;border-radius:.3rem}
.swatch.image-edge,.swatch.layer-edge{border:0;height:0;border-top:2px solid ${COLORS.imageEdge}}.swatch.layer-edge{border-top:1px solid ${COLORS.line}}`;

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
    if (options.svg) result += `${legend()}<div id="graph">${options.svg}</div>`;
    const query = new URLSearchParams([...graph.images.map((i) => ['image', i.reference]), ...graph.errors.map((e) => ['image', e.reference]), ['platform', graph.platform]]);
    result += `<p>For scripts: <a href="${escapeHTML(`${base}/graph.svg?${query}`)}">graph.svg</a>, <a href="${escapeHTML(`${base}/graph.json?${query}`)}">graph.json</a></p></section>`;
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kontain: viz</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
textarea{width:100%;max-width:48rem;font-family:ui-monospace,monospace;font-size:.9rem}
.problem,#errors{color:#b00020}#graph{overflow:auto;border:1px solid #ddd;padding:.5rem}#graph svg{max-width:100%;height:auto}
${LEGEND_STYLE}</style></head>
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
