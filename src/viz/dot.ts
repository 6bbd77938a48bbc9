import type { GraphNode, ImageGraph } from './graph.js';

/**
 * A DOT quoted string that shows `text` literally. The DOT parser only knows `\"`; the
 * label layer then reads backslash escapes (`\n`, `\N`, `\l`, …) and `&…;` entities, so
 * `\` and `&` are escaped too. Newlines become `\n` line breaks; other control characters
 * are dropped (Graphviz is C and would stop at a NUL).
 */
export function dotString(text: string): string {
  const escaped = text
    .replace(/[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]/g, '')
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/&/g, '&amp;')
    .replace(/\r\n|\r|\n/g, '\\n');
  return `"${escaped}"`;
}

function attributes(attrs: Record<string, string | number | undefined>): string {
  const list = Object.entries(attrs)
    .filter((entry): entry is [string, string | number] => entry[1] !== undefined)
    .map(([name, value]) => `${name}=${typeof value === 'number' ? value : dotString(value)}`);
  return `[${list.join(', ')}]`;
}

/** Fills and lines of the drawing; the page's legend shows the same. */
export const COLORS = { layer: '#e8eef7', shared: '#b9d3f5', image: '#fff1bf', scratch: '#ffffff', line: '#4a5568', imageEdge: '#b7791f' };

/**
 * The font Graphviz sizes labels for. Graphviz compiled to WebAssembly has no fonts: it
 * estimates text widths from metrics built into it for a few families, DejaVu Sans among
 * them. Debian's browsers draw DejaVu Sans (its default sans-serif), so the label fits the
 * box it was measured for; with Helvetica named, Graphviz measured Arial's narrower
 * letters and long references ran out of their boxes.
 */
export const LABEL_FONT = 'DejaVu Sans';

/**
 * What the SVG asks browsers for: the measured font, else Verdana (about as wide; Windows
 * and macOS have it), else any sans-serif (narrower, so still inside the box).
 */
export const DRAWN_FONTS = 'DejaVu Sans,Verdana,sans-serif';

function nodeAttributes(node: GraphNode): Record<string, string | undefined> {
  switch (node.kind) {
    case 'scratch':
      return { id: node.id, class: 'scratch', label: node.label, shape: 'box', style: 'rounded,dashed', fillcolor: COLORS.scratch };
    case 'layer': {
      const shared = node.images!.length > 1;
      return {
        id: node.id,
        class: shared ? 'layer shared' : 'layer',
        label: node.label,
        shape: 'ellipse',
        style: 'filled',
        fillcolor: shared ? COLORS.shared : COLORS.layer,
        tooltip: `${node.digest}\nin ${node.images!.join(', ')}`,
      };
    }
    case 'image':
      return { id: node.id, class: 'image', label: node.label, shape: 'box', style: 'filled,bold', fillcolor: COLORS.image, tooltip: `${node.reference}\n${node.digest}` };
  }
}

/**
 * The graph as DOT, top to bottom: images at the top, each layer above the one it sits
 * on, `scratch` at the bottom. Node names are the graph's ids; they and every edge get an
 * SVG `id` (`edge:<from>:<to>`), so scripts and tests can find them in the SVG.
 */
export function toDot(graph: ImageGraph, options: { errorsInLabel?: boolean } = {}): string {
  const lines = [
    'digraph layers {',
    `  graph [rankdir=TB, nodesep=0.25, ranksep=0.35, fontname=${dotString(LABEL_FONT)}, fontsize=12, bgcolor="white"];`,
    `  node [fontname=${dotString(LABEL_FONT)}, fontsize=11, color=${dotString(COLORS.line)}];`,
    `  edge [color=${dotString(COLORS.line)}, arrowsize=0.7];`,
  ];
  if (options.errorsInLabel && graph.errors.length > 0) {
    // graph.svg stands alone, so it says what is missing from it; the page lists errors itself.
    const text = ['Not drawn:', ...graph.errors.map((e) => `${e.reference}: ${e.error}`)].join('\n');
    lines.push(`  graph ${attributes({ label: text, labelloc: 'b', fontcolor: '#b00020' })};`);
  }
  for (const node of graph.nodes) lines.push(`  ${dotString(node.id)} ${attributes(nodeAttributes(node))};`);
  for (const edge of graph.edges) {
    const style = edge.kind === 'image' ? { color: COLORS.imageEdge, penwidth: '1.5' } : {};
    lines.push(`  ${dotString(edge.from)} -> ${dotString(edge.to)} ${attributes({ id: `edge:${edge.from}:${edge.to}`, class: `${edge.kind}-edge`, ...style })};`);
  }
  const images = graph.nodes.filter((n) => n.kind === 'image').map((n) => dotString(n.id));
  if (images.length > 0) lines.push(`  { rank=min; ${images.join('; ')}; }`);
  lines.push(`  { rank=max; ${dotString('scratch')}; }`);
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** Graphviz's SVG with the font list browsers should draw from (Graphviz writes the one font it measured). */
export function withDrawnFonts(svg: string): string {
  return svg.replaceAll(`font-family="${LABEL_FONT}"`, `font-family="${DRAWN_FONTS}"`);
}
