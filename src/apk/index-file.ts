/**
 * The APKINDEX text format: records separated by blank lines, each line `X:value` with a
 * single-letter key. Empty values are accepted (apko writes `D:` with nothing after it);
 * unknown letters are skipped so newer indexes still read.
 */
import type { ApkPackage } from './types.js';
import { ApkError } from './errors.js';

const words = (value: string) => value.split(/\s+/).filter(Boolean);

function toPackage(fields: Map<string, string[]>, repository: string, line: number): ApkPackage {
  const one = (key: string) => fields.get(key)?.at(-1);
  const num = (key: string) => {
    const value = one(key);
    return value === undefined || value === '' ? undefined : Number(value);
  };
  const list = (key: string) => (fields.get(key) ?? []).flatMap(words);
  const name = one('P');
  const version = one('V');
  if (!name || !version) throw new ApkError('malformed', `APKINDEX record ending at line ${line} has no P: or V:`);
  const pkg: ApkPackage = {
    name,
    version,
    arch: one('A') ?? '',
    checksum: one('C') ?? '',
    size: num('S') ?? 0,
    installedSize: num('I') ?? 0,
    depends: list('D'),
    provides: list('p'),
    installIf: list('i'),
    repository,
  };
  const optional: Array<[keyof ApkPackage, string]> = [
    ['description', 'T'],
    ['url', 'U'],
    ['license', 'L'],
    ['origin', 'o'],
    ['maintainer', 'm'],
    ['commit', 'c'],
  ];
  for (const [prop, key] of optional) {
    const value = one(key);
    if (value !== undefined) (pkg as unknown as Record<string, unknown>)[prop] = value;
  }
  const buildTime = num('t');
  if (buildTime !== undefined && Number.isFinite(buildTime)) pkg.buildTime = buildTime;
  const priority = num('k');
  if (priority !== undefined && Number.isFinite(priority)) pkg.providerPriority = priority;
  if (fields.has('r')) pkg.replaces = list('r');
  return pkg;
}

export function parseApkIndexText(text: string, repository: string): ApkPackage[] {
  const packages: ApkPackage[] = [];
  let fields = new Map<string, string[]>();
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line === '') {
      if (fields.size > 0) packages.push(toPackage(fields, repository, i + 1));
      fields = new Map();
      return;
    }
    if (line.length < 2 || line[1] !== ':') throw new ApkError('malformed', `APKINDEX line ${i + 1} is not "X:value": ${JSON.stringify(line.slice(0, 80))}`);
    const key = line[0]!;
    fields.set(key, [...(fields.get(key) ?? []), line.slice(2)]);
  });
  if (fields.size > 0) packages.push(toPackage(fields, repository, lines.length));
  return packages;
}
