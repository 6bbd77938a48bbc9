// Module resolve hook (runs on Node's loader thread): appends every bare package
// specifier a process imports to the file named by KONTAIN_TEST_IMPORT_LOG, so a test can
// tell which packages a server loaded. Registered by record-imports.ts.
import { appendFileSync } from 'node:fs';

type Resolve = (specifier: string, context: unknown) => Promise<unknown>;

export async function resolve(specifier: string, context: unknown, next: Resolve): Promise<unknown> {
  const log = process.env.KONTAIN_TEST_IMPORT_LOG;
  if (log && !specifier.startsWith('.') && !specifier.startsWith('/') && !specifier.includes(':')) appendFileSync(log, specifier + '\n');
  return next(specifier, context);
}
