// Bundles the compiled server (dist/cmd/kontain.js) into dist/bundle/ with esbuild.
// Why: a cold Cloud Run instance spends most of its start resolving and reading the
// few hundred small files of express, pino and the project itself; one bundle (with
// split chunks for what is imported on first use) starts in a fraction of that.
// The Google clients stay external: they are loaded only when a gs:// store or Cloud
// Tasks is configured, and read their own protocol files at run time; Graphviz's
// WebAssembly package likewise stays a package. viz's render worker is its own entry
// (dist/bundle/render-worker.js, beside the code that starts it), and piscina stays a
// package: it starts its workers from a file of its own.
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

// Chunk names change with their content: last build's would stay beside this one's.
await rm('dist/bundle', { recursive: true, force: true });

/** Express's own require of body-parser gets body-parser-on-use.cjs instead. */
const bodyParserOnUse = {
  name: 'body-parser-on-use',
  setup(build) {
    build.onResolve({ filter: /^body-parser$/ }, (args) =>
      /[\\/]express[\\/]lib[\\/]express\.js$/.test(args.importer) ? { path: fileURLToPath(new URL('./body-parser-on-use.cjs', import.meta.url)) } : undefined,
    );
  },
};

await build({
  entryPoints: { kontain: 'dist/cmd/kontain.js', 'render-worker': 'dist/src/viz/render-worker.js' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // iconv-lite (body-parser's charsets) and mime-db (mime-types' table) are most of
  // Express's size; as packages they are read from node_modules, a fraction of the cost
  // of compiling them into the bundle, and iconv-lite's encoding tables load only when used.
  external: ['@google-cloud/*', 'google-auth-library', '@viz-js/viz', 'piscina', 'iconv-lite', 'mime-db'],
  // CommonJS dependencies call require() for Node's built-ins; ESM output has none.
  banner: { js: "import { createRequire as __kontainRequire } from 'node:module'; const require = __kontainRequire(import.meta.url);" },
  plugins: [bodyParserOnUse],
  logLevel: 'warning',
});
