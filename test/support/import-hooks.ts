// Module resolve hook (runs on Node's loader thread): appends every bare package
// specifier a process imports, and every bundle chunk (`./nix-AB12CD34.js`), to the file
// named by KONTAIN_TEST_IMPORT_LOG, so a test can tell which packages and which of the
// bundle's lazily imported modules a server loaded. Registered by record-imports.ts.
// With KONTAIN_TEST_HOLD_IMPORT=<chunk name>:<file>, the import of that chunk waits until
// <file> exists, so a test can look at a server stopped just before it.
import { appendFileSync, existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

type Resolve = (specifier: string, context: unknown) => Promise<unknown>;

export async function resolve(specifier: string, context: unknown, next: Resolve): Promise<unknown> {
  const log = process.env.KONTAIN_TEST_IMPORT_LOG;
  const bare = !specifier.startsWith('.') && !specifier.startsWith('/') && !specifier.includes(':');
  const chunk = /^\.\/([\w-]+)-[A-Z0-9]+\.js$/.exec(specifier)?.[1];
  if (log && (bare || /^\.\/[\w-]+\.js$/.test(specifier))) appendFileSync(log, specifier + '\n');
  const [held, until] = (process.env.KONTAIN_TEST_HOLD_IMPORT ?? '').split(':');
  if (chunk !== undefined && chunk === held && until) while (!existsSync(until)) await sleep(10);
  return next(specifier, context);
}
