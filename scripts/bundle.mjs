// Bundles the compiled server (dist/cmd/kontain.js) into dist/bundle/ with esbuild.
// Why: a cold Cloud Run instance spends most of its start resolving and reading the
// few hundred small files of express, pino and the project itself; one bundle (with
// split chunks for what is imported on first use) starts in a fraction of that.
// The Google clients stay external: they are loaded only when a gs:// store or Cloud
// Tasks is configured, and read their own protocol files at run time; Graphviz's
// WebAssembly package likewise stays a package. viz's render worker is its own entry
// (dist/bundle/render-worker.js, beside the code that starts it), and piscina stays a
// package: it starts its workers from a file of its own.
import { build } from 'esbuild';

await build({
  entryPoints: { kontain: 'dist/cmd/kontain.js', 'render-worker': 'dist/src/viz/render-worker.js' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['@google-cloud/*', 'google-auth-library', '@viz-js/viz', 'piscina'],
  // CommonJS dependencies call require() for Node's built-ins; ESM output has none.
  banner: { js: "import { createRequire as __kontainRequire } from 'node:module'; const require = __kontainRequire(import.meta.url);" },
  logLevel: 'warning',
});
