// Builds the fd-passing addon at `npm ci` (the package's install script). node-gyp
// is npm's own; Node's headers are taken from the installation running this script
// when it has them (official images, distribution packages), so nothing is downloaded.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const prefix = path.resolve(process.execPath, '..', '..');
const args = ['rebuild', '--directory', here];
if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const result = spawnSync('node-gyp', args, { stdio: 'inherit', shell: false });
if (result.error) {
  console.error(`native/build.mjs: could not run node-gyp: ${result.error.message}`);
  process.exit(1);
}
process.exit(result.status ?? 1);
