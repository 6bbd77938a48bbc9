/**
 * The shapes the apk modules share: a package record as an APKINDEX lists it, and the
 * resolver's refusal. Field letters are the APKINDEX keys (see shared/specs/apk.md §3).
 */

/** One package record of an APKINDEX. */
export interface ApkPackage {
  /** P */
  name: string;
  /** V */
  version: string;
  /** A */
  arch: string;
  /** C: `Q1` + base64(SHA-1 of the control gzip member), or `Q2` + base64(SHA-256). */
  checksum: string;
  /** S: size of the .apk file in bytes. */
  size: number;
  /** I: installed size in bytes. */
  installedSize: number;
  /** T */
  description?: string;
  /** U */
  url?: string;
  /** L */
  license?: string;
  /** o */
  origin?: string;
  /** m */
  maintainer?: string;
  /** t: build time, unix seconds. */
  buildTime?: number;
  /** c */
  commit?: string;
  /** k */
  providerPriority?: number;
  /** D: dependency tokens as written (`so:libc.so.6`, `!foo`, `bar>=1.2`). */
  depends: string[];
  /** p: provides as written (`cmd:hello=2.12-r1`, `/bin/sh`). */
  provides: string[];
  /** i: install_if tokens. */
  installIf: string[];
  /** r: replaces (in .PKGINFO and the installed database; indexes rarely carry it). */
  replaces?: string[];
  /** The repository base URL this record came from; the file is `<repository>/<arch>/<name>-<version>.apk`. */
  repository: string;
}

export type ResolveFailure = 'unknown-package' | 'unsatisfiable' | 'conflict' | 'bad-constraint';

/** Why a package set cannot be installed; the message names the package and the dependency. */
export class ResolveError extends Error {
  constructor(
    readonly failure: ResolveFailure,
    message: string,
  ) {
    super(message);
    this.name = 'ResolveError';
  }
}
