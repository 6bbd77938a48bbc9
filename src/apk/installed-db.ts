/**
 * `/lib/apk/db/installed` records, in apk-tools' line format: the index header fields
 * (`C P V A S I T U L o m t c k D p i`), then installed-only fields (`r:`), then the
 * file list: `F:<dir>` with `M:` when the directory is not 0:0:755, and under it
 * `R:<name>`, `a:` when not 0:0:644, `Z:Q1…` from the PAX SHA-1. The root is a bare `F:`
 * and never gets an `M:` line: apk refuses a database that has one.
 */
import type { DataEntry } from './package-data.js';
import type { ApkPackage } from './types.js';

function qChecksum(sha1hex: string): string {
  return 'Q1' + Buffer.from(sha1hex, 'hex').toString('base64');
}

function owner(entry: DataEntry): string {
  return `${entry.uid}:${entry.gid}:${entry.mode.toString(8)}`;
}

function headerLines(pkg: ApkPackage): string[] {
  const lines: string[] = [];
  const add = (key: string, value: string | number | undefined) => {
    if (value !== undefined) lines.push(`${key}:${value}`);
  };
  add('C', pkg.checksum || undefined);
  add('P', pkg.name);
  add('V', pkg.version);
  add('A', pkg.arch);
  add('S', pkg.size);
  add('I', pkg.installedSize);
  add('T', pkg.description);
  add('U', pkg.url);
  add('L', pkg.license);
  add('o', pkg.origin);
  add('m', pkg.maintainer);
  add('t', pkg.buildTime);
  add('c', pkg.commit);
  add('k', pkg.providerPriority);
  if (pkg.depends.length) add('D', pkg.depends.join(' '));
  if (pkg.provides.length) add('p', pkg.provides.join(' '));
  if (pkg.installIf.length) add('i', pkg.installIf.join(' '));
  if (pkg.replaces?.length) add('r', pkg.replaces.join(' '));
  return lines;
}

const dirname = (path: string) => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
const basename = (path: string) => path.slice(path.lastIndexOf('/') + 1);

/** One package's record, ending with the blank line that terminates it. */
export function installedRecord(pkg: ApkPackage, entries: readonly DataEntry[]): string {
  const lines = headerLines(pkg);
  const dirs = new Map(entries.filter((e) => e.type === 'directory').map((e) => [e.path, e]));
  let current: string | undefined;
  const enter = (dir: string) => {
    if (dir === current) return;
    current = dir;
    lines.push(`F:${dir}`);
    const entry = dirs.get(dir);
    if (dir !== '' && entry && owner(entry) !== '0:0:755') lines.push(`M:${owner(entry)}`);
  };
  for (const entry of entries) {
    if (entry.type === 'directory') {
      enter(entry.path);
      continue;
    }
    enter(dirname(entry.path));
    lines.push(`R:${basename(entry.path)}`);
    if (owner(entry) !== '0:0:644') lines.push(`a:${owner(entry)}`);
    if (entry.sha1) lines.push(`Z:${qChecksum(entry.sha1)}`);
  }
  return lines.join('\n') + '\n\n';
}
