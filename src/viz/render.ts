import type { Viz } from '@viz-js/viz';

let viz: Promise<Viz> | undefined;

/** Graphviz compiled to WebAssembly, loaded on first use (a few MB) and kept. */
function graphviz(): Promise<Viz> {
  // Imported here, not at the top: the module is large and most servers never draw.
  viz ??= import('@viz-js/viz').then(({ instance }) => instance()).catch((err: unknown) => {
    viz = undefined;
    throw err;
  });
  return viz;
}

/** DOT → a standalone SVG document. Rejects with Graphviz's own messages when it fails. */
export async function renderSvg(dot: string): Promise<string> {
  const result = (await graphviz()).render(dot, { format: 'svg', engine: 'dot' });
  if (result.status !== 'success') throw new Error(`graphviz failed: ${result.errors.map((e) => e.message).join('; ')}`);
  return result.output;
}

/** The `<svg>` element alone, for putting inside an HTML page (no XML prolog or DOCTYPE). */
export function inlineSvg(svg: string): string {
  const start = svg.indexOf('<svg');
  return start < 0 ? svg : svg.slice(start);
}
