import { fileURLToPath } from 'node:url';

/**
 * How to run a project module in a child process: compiled JavaScript under `dist/`
 * (what `npm test` runs), or TypeScript through tsx during development.
 */
export function nodeArgsFor(moduleURL: URL): { args: string[]; path: string } {
  const file = fileURLToPath(moduleURL);
  return file.endsWith('.ts') ? { args: ['--import', 'tsx'], path: file } : { args: [], path: file };
}

/** The URL of a sibling module, keeping whichever extension this file was loaded with. */
export function siblingModule(from: string, relative: string): URL {
  const ext = from.endsWith('.ts') ? '.ts' : '.js';
  return new URL(relative + ext, from);
}
