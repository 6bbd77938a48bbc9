/**
 * `.PKGINFO`, the first file of a package's control member: `key = value` lines, `#`
 * comments, repeatable keys once per value.
 */

export interface PkgInfo {
  name: string;
  version: string;
  arch: string;
  /** Installed size (`size`). */
  size?: number;
  origin?: string;
  builddate?: number;
  depends: string[];
  provides: string[];
  replaces: string[];
  installIf: string[];
  triggers: string[];
  /** Hex SHA-256 of the compressed data member, when the package binds it. */
  datahash?: string;
  /** Every key with all its values, for fields not named above. */
  fields: Map<string, string[]>;
}

export function parsePkgInfo(text: string): PkgInfo {
  const fields = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) continue;
    const eq = line.indexOf(' = ');
    const [key, value] = eq >= 0 ? [line.slice(0, eq), line.slice(eq + 3)] : [line.replace(/ =$/, ''), ''];
    fields.set(key.trim(), [...(fields.get(key.trim()) ?? []), value.trim()]);
  }
  const one = (key: string) => fields.get(key)?.at(-1);
  const many = (key: string) => (fields.get(key) ?? []).flatMap((v) => v.split(/\s+/)).filter(Boolean);
  const num = (key: string) => {
    const v = one(key);
    return v ? Number(v) : undefined;
  };
  return {
    name: one('pkgname') ?? '',
    version: one('pkgver') ?? '',
    arch: one('arch') ?? '',
    size: num('size'),
    origin: one('origin'),
    builddate: num('builddate'),
    depends: many('depend'),
    provides: many('provides'),
    replaces: many('replaces'),
    installIf: many('install_if'),
    triggers: many('triggers'),
    datahash: one('datahash')?.toLowerCase() || undefined,
    fields,
  };
}
