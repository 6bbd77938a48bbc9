/**
 * Which package's copy of each path ends up in the image, decided before any byte is
 * written, with apk's rules: packages are installed in order; a later package may
 * overwrite an earlier one's file when it `replaces` that package, when both come from
 * the same origin, or when the two files are identical; an earlier package that
 * `replaces` the later one keeps its file. Anything else is a conflict and the build is
 * refused. Directories are shared: the first package to create one sets its mode.
 */
import { ApkError } from './errors.js';
import type { DataEntry } from './package-data.js';
import type { VerifiedApk } from './verify.js';

export interface PlannedPackage {
  apk: VerifiedApk;
  /** What the installed database lists for this package (its directories and the files it won). */
  owned: DataEntry[];
}

export interface InstallPlan {
  packages: PlannedPackage[];
  /** path → index of the package whose entry is written (first for directories, winner for the rest). */
  writer: Map<string, number>;
  /** Symlinks of the final tree, path → target, to place generated files through them. */
  symlinks: Map<string, string>;
}

/** Names in `replaces` tokens, without version constraints (`foo<2` → `foo`). */
function replacedNames(apk: VerifiedApk): Set<string> {
  const tokens = [...(apk.record.replaces ?? []), ...apk.head.pkginfo.replaces];
  return new Set(tokens.map((t) => t.replace(/^!/, '').split(/[<>=~@]/)[0]!));
}

const originOf = (apk: VerifiedApk) => apk.record.origin ?? apk.head.pkginfo.origin;
const nameOf = (apk: VerifiedApk) => `${apk.record.name}-${apk.record.version}`;

export function planInstall(apks: readonly VerifiedApk[]): InstallPlan {
  const writer = new Map<string, number>();
  const kinds = new Map<string, DataEntry>();
  const replaces = apks.map(replacedNames);
  for (const [index, apk] of apks.entries()) {
    for (const entry of apk.entries) {
      const earlier = kinds.get(entry.path);
      if (!earlier) {
        writer.set(entry.path, index);
        kinds.set(entry.path, entry);
        continue;
      }
      const owner = writer.get(entry.path)!;
      const previous = apks[owner]!;
      if (earlier.type === 'directory' && entry.type === 'directory') continue;
      if (earlier.type === 'directory' || entry.type === 'directory') {
        throw new ApkError('file-conflict', `${nameOf(apk)} and ${nameOf(previous)} disagree whether /${entry.path} is a directory`);
      }
      const identical = earlier.type === entry.type && earlier.sha1 !== undefined && earlier.sha1 === entry.sha1 && earlier.linkname === entry.linkname;
      const sameOrigin = originOf(apk) !== undefined && originOf(apk) === originOf(previous);
      if (replaces[index]!.has(previous.record.name) || sameOrigin || identical) {
        writer.set(entry.path, index);
        kinds.set(entry.path, entry);
      } else if (replaces[owner]!.has(apk.record.name)) {
        continue;
      } else {
        throw new ApkError(
          'file-conflict',
          `${nameOf(apk)} and ${nameOf(previous)} both install /${entry.path}, and neither replaces the other`,
        );
      }
    }
  }
  const packages = apks.map((apk, index) => ({
    apk,
    owned: apk.entries.filter((e) => e.type === 'directory' || writer.get(e.path) === index),
  }));
  const symlinks = new Map<string, string>();
  for (const [path, entry] of kinds) if (entry.type === 'symlink' && entry.linkname) symlinks.set(path, entry.linkname);
  return { packages, writer, symlinks };
}

/**
 * `path` with every leading component that is a symlink in the final tree replaced by
 * its target, so a generated file lands where the image's own links send it (`lib/apk`
 * on a usr-merged image where `lib` → `usr/lib`).
 */
export function resolveThroughLinks(plan: InstallPlan, path: string): string {
  let parts = path.split('/');
  for (let hops = 0, i = 1; i < parts.length && hops < 16; i++) {
    const prefix = parts.slice(0, i).join('/');
    const target = plan.symlinks.get(prefix);
    if (target === undefined) continue;
    const base = target.startsWith('/') ? [] : parts.slice(0, i - 1);
    const joined: string[] = [];
    for (const part of [...base, ...target.split('/'), ...parts.slice(i)]) {
      if (part === '' || part === '.') continue;
      if (part === '..') joined.pop();
      else joined.push(part);
    }
    parts = joined;
    i = 0;
    hops++;
  }
  return parts.join('/');
}
