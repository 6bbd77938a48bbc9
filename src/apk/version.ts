/**
 * APK version ordering (shared/specs/apk.md §2):
 *   number{.number}…{letter}{_suffix{number}}…{~hash}{-r#}
 * The version is read as a sequence of typed tokens and two versions are walked token by
 * token. When both sides have a token of the same kind the values decide; when the kinds
 * differ, the side that still has the more specific continuation (digit before letter
 * before suffix before hash before revision before the end) is newer — except that a
 * pre-release suffix (_alpha, _beta, _pre, _rc) makes its side older. That single rule
 * gives 1.2 < 1.2.3, 1.0.0 < 1.0.0a, 1.2.3_rc1 < 1.2.3 < 1.2.3_p1 and 1.2.3 < 1.2.3-r1.
 * Like apk-tools 2.x, digits may follow the letter and letters and digits may then
 * alternate: Alpine 3.16 really ships opensmtpd 6.8.0p2-r4 and 0.99f7-r0.
 */

// Token kinds in the order the walk uses for "more specific continuation".
const enum Kind {
  Digit = 1,
  Letter = 2,
  Suffix = 3,
  SuffixNumber = 4,
  Hash = 5,
  Revision = 6,
  End = 7,
}

const SUFFIXES = ['alpha', 'beta', 'pre', 'rc', 'cvs', 'svn', 'git', 'hg', 'p'] as const;
// Index in SUFFIXES below which a suffix marks a pre-release (sorts before the bare version).
const RELEASE = SUFFIXES.indexOf('cvs');

interface Token {
  kind: Kind;
  /** Digits as written (numbers may exceed 2^53: dates, perl's 1.000023), suffix index, or hash text. */
  text: string;
  /** True for a numeric component after the first one (leading zeros then mean a fraction). */
  fraction?: boolean;
}

const VALID = /^\d+(?:\.\d+)*(?:[a-z]\d+)*[a-z]?(?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)\d*)*(?:~[0-9a-f]+)?(?:-r\d+)?$/;

export function isValidApkVersion(v: string): boolean {
  return VALID.test(v);
}

function tokens(v: string): Token[] {
  const out: Token[] = [];
  const re = /^(\d+)((?:\.\d+)*)((?:[a-z]\d+)*[a-z]?)((?:_[a-z]+\d*)*)(?:~([0-9a-f]+))?(?:-r(\d+))?$/;
  const m = re.exec(v)!;
  out.push({ kind: Kind.Digit, text: m[1]! });
  for (const part of m[2]!.split('.').slice(1)) out.push({ kind: Kind.Digit, text: part, fraction: true });
  for (const [, letter, digits] of m[3]!.matchAll(/([a-z])(\d*)/g)) {
    out.push({ kind: Kind.Letter, text: letter! });
    if (digits) out.push({ kind: Kind.Digit, text: digits });
  }
  for (const s of m[4]!.split('_').slice(1)) {
    const [, word, num] = /^([a-z]+)(\d*)$/.exec(s)!;
    out.push({ kind: Kind.Suffix, text: String(SUFFIXES.indexOf(word as (typeof SUFFIXES)[number])) });
    if (num) out.push({ kind: Kind.SuffixNumber, text: num });
  }
  if (m[5] !== undefined) out.push({ kind: Kind.Hash, text: m[5] });
  if (m[6] !== undefined) out.push({ kind: Kind.Revision, text: m[6] });
  out.push({ kind: Kind.End, text: '' });
  return out;
}

/** Compare digit strings of any length numerically. */
function compareDigits(a: string, b: string): number {
  const x = a.replace(/^0+(?=.)/, '');
  const y = b.replace(/^0+(?=.)/, '');
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}

const leadingZeros = (s: string) => /^0*/.exec(s)![0].length;

function compareToken(a: Token, b: Token): number {
  switch (a.kind) {
    case Kind.Digit:
      // After a dot a leading zero reads like a decimal fraction (perl's 1.000023 is older
      // than 1.0001): more leading zeros means smaller, then the rest compares numerically.
      if (a.fraction && b.fraction) {
        const za = leadingZeros(a.text);
        const zb = leadingZeros(b.text);
        if (za !== zb) return za > zb ? -1 : 1;
        return compareDigits(a.text.slice(za), b.text.slice(zb));
      }
      return compareDigits(a.text, b.text);
    case Kind.Letter:
      return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
    case Kind.Suffix:
    case Kind.SuffixNumber:
    case Kind.Revision:
      return compareDigits(a.text, b.text);
    default:
      // A ~hash names a commit; hashes have no order, so two hashed versions tie on it.
      return 0;
  }
}

const isPreRelease = (t: Token) => t.kind === Kind.Suffix && Number(t.text) < RELEASE;

/**
 * Walk two token lists. With `fuzzy`, stop with 0 once `b` (the constraint) runs out:
 * that is the `~` prefix match, component-wise, so ~1.6 matches 1.6.9 but not 1.60.
 */
function walk(a: Token[], b: Token[], fuzzy: boolean): number {
  for (let i = 0; ; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (fuzzy && y.kind === Kind.End) return 0;
    if (x.kind === y.kind) {
      if (x.kind === Kind.End) return 0;
      const c = compareToken(x, y);
      if (c !== 0) return c;
      continue;
    }
    if (isPreRelease(x)) return -1;
    if (isPreRelease(y)) return 1;
    return x.kind < y.kind ? 1 : -1;
  }
}

/**
 * Order two versions: negative when a is older, positive when newer, 0 when equal.
 * Versions outside the grammar cannot be ordered by apk either; so the ordering stays total
 * and deterministic, a malformed version sorts below every valid one and malformed
 * versions compare as plain strings among themselves.
 */
export function compareApkVersions(a: string, b: string): number {
  const va = isValidApkVersion(a);
  const vb = isValidApkVersion(b);
  if (!va || !vb) {
    if (va !== vb) return va ? 1 : -1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  return Math.sign(walk(tokens(a), tokens(b), false));
}

/** The `~` match: `version` equals `prefix` on every token `prefix` has. False if either is malformed. */
export function fuzzyMatchesApkVersion(version: string, prefix: string): boolean {
  if (!isValidApkVersion(version) || !isValidApkVersion(prefix)) return false;
  return walk(tokens(version), tokens(prefix), true) === 0;
}
