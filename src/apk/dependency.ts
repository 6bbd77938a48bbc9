/**
 * Dependency tokens as they appear in D:, i:, world files and apko `packages`
 * (shared/specs/apk.md §4): `[!]name[@tag][op version]`, and provide tokens
 * (`name` or `name=version`) as they appear in p:.
 */
import { ResolveError } from './types.js';
import { compareApkVersions, fuzzyMatchesApkVersion, isValidApkVersion } from './version.js';

export type DependencyOp = '=' | '<' | '>' | '<=' | '>=' | '~' | '>~' | '<~' | '><';

export interface Dependency {
  name: string;
  /** `!name`: the name must not be installed (at a matching version, when one is given). */
  conflict: boolean;
  /** `@tag`: pinned to repositories with that tag. */
  tag?: string;
  op?: DependencyOp;
  /** A version, or for `><` the `Q1…`/`Q2…` checksum of the exact package. */
  version?: string;
}

export interface Provide {
  name: string;
  /** Absent for an unversioned (virtual) provide. */
  version?: string;
}

// Names are everything up to an operator or `@`: generated names carry `:`, `/`, `+` and
// even `[` (`cmd:[`), so the package-name character set is too narrow for them.
const DEP = /^(!?)([^\s<>=~@!]+)(?:@([^\s<>=~@]+))?(?:(<=|>=|><|>~|<~|=~|[=<>~])(\S+))?$/;
const CHECKSUM = /^Q[12][A-Za-z0-9+/]+=*$/;

function bad(token: string, why: string): never {
  throw new ResolveError('bad-constraint', `bad dependency "${token}": ${why}`);
}

export function parseDependency(token: string): Dependency {
  const m = DEP.exec(token);
  if (!m) bad(token, 'expected [!]name[@tag][op version]');
  const [, bang, name, tag, rawOp, version] = m;
  const dep: Dependency = { name: name!, conflict: bang === '!' };
  if (tag !== undefined) dep.tag = tag;
  if (rawOp !== undefined) {
    // `=~` is the older spelling of `~` that apk-tools still reads.
    const op = (rawOp === '=~' ? '~' : rawOp) as DependencyOp;
    if (op === '><' ? !CHECKSUM.test(version!) : !isValidApkVersion(version!)) {
      bad(token, op === '><' ? `"${version}" is not a Q1/Q2 checksum` : `"${version}" is not an apk version`);
    }
    dep.op = op;
    dep.version = version!;
  }
  return dep;
}

export function parseProvide(token: string): Provide {
  const eq = token.indexOf('=');
  const name = eq < 0 ? token : token.slice(0, eq);
  if (!name || /[\s<>~@]/.test(name)) bad(token, 'expected name or name=version');
  if (eq < 0) return { name };
  const version = token.slice(eq + 1);
  if (!isValidApkVersion(version)) bad(token, `"${version}" is not an apk version`);
  return { name, version };
}

/** The token written back: what error messages show. */
export function formatDependency(dep: Dependency): string {
  return `${dep.conflict ? '!' : ''}${dep.name}${dep.tag ? `@${dep.tag}` : ''}${dep.op ? `${dep.op}${dep.version}` : ''}`;
}

/**
 * Whether `version` meets the operator and version of `constraint` (name and `!` are the
 * caller's business). No operator matches anything. `~` is a component-wise prefix match,
 * so ~1.6 matches 1.6, 1.6.0_pre1 and 1.6.9_p1 but not 1.60 or 1.7. `><` compares the
 * package checksum, so it needs `checksum`; without one it never matches.
 */
export function satisfies(constraint: Pick<Dependency, 'op' | 'version'>, version: string, checksum?: string): boolean {
  const { op, version: wanted } = constraint;
  if (op === undefined || wanted === undefined) return true;
  if (op === '><') return checksum !== undefined && checksum === wanted;
  if (op === '~') return fuzzyMatchesApkVersion(version, wanted);
  if (!isValidApkVersion(version)) return false;
  const c = compareApkVersions(version, wanted);
  switch (op) {
    case '=':
      return c === 0;
    case '<':
      return c < 0;
    case '>':
      return c > 0;
    case '<=':
      return c <= 0;
    case '>=':
      return c >= 0;
    case '<~':
      return c < 0 || fuzzyMatchesApkVersion(version, wanted);
    case '>~':
      return c > 0 || fuzzyMatchesApkVersion(version, wanted);
  }
}
