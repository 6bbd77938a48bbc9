// Module resolve hook (runs on Node's loader thread): appends every bare package
// specifier a process imports, and every bundle chunk (`./nix-AB12CD34.js`), to the file
// named by KONTAIN_TEST_IMPORT_LOG, so a test can tell which packages and which of the
// bundle's lazily imported modules a server loaded. Registered by record-imports.ts.
import { appendFileSync } from 'node:fs';

type Resolve = (specifier: string, context: unknown) => Promise<unknown>;

export async function resolve(specifier: string, context: unknown, next: Resolve): Promise<unknown> {
  const log = process.env.KONTAIN_TEST_IMPORT_LOG;
  const bare = !specifier.startsWith('.') && !specifier.startsWith('/') && !specifier.includes(':');
  if (log && (bare || /^\.\/[\w-]+\.js$/.test(specifier))) appendFileSync(log, specifier + '\n');
  return next(specifier, context);
}
