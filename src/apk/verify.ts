/**
 * A downloaded package checked end to end before anything of it is installed: a trusted
 * signature over the control member, the control member's SHA-1 equal to the index's
 * `C:`, and the data member's SHA-256 equal to the signed `datahash`. The same read of the
 * data lists the files (for conflicts and the installed database).
 */
import { ApkError } from './errors.js';
import { checkDataHash, scanApkData, type DataEntry } from './package-data.js';
import { readApkHead, verifyApkHead, type ApkHead } from './package-file.js';
import type { ApkPublicKey } from './signature.js';
import type { ApkPackage } from './types.js';

export interface VerifiedApk {
  record: ApkPackage;
  /** The file on disk; its data member starts at `head.dataOffset`. */
  path: string;
  head: ApkHead;
  entries: DataEntry[];
  signedBy: string;
}

export async function verifyApkPackage(path: string, record: ApkPackage, keyring: readonly ApkPublicKey[], what: string): Promise<VerifiedApk> {
  const head = await readApkHead(path, what);
  const signedBy = verifyApkHead(head, record, keyring, what);
  const scanned = await scanApkData(path, head.dataOffset, what);
  if (!head.pkginfo.datahash) {
    // Without datahash nothing binds the data member to the signed control member.
    throw new ApkError('checksum-mismatch', `${what} has no datahash in .PKGINFO, so its files cannot be verified`);
  }
  checkDataHash(scanned, head.pkginfo.datahash, what);
  return { record, path, head, entries: scanned.entries, signedBy };
}
