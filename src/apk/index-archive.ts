/**
 * An `APKINDEX.tar.gz`: a signature member, then one member holding `APKINDEX` and
 * `DESCRIPTION`. The signature covers the compressed bytes of that second member.
 */
import { ApkError } from './errors.js';
import { GzipFormatError, readGzipMember, splitGzipMembers } from './gzip-members.js';
import { parseApkIndexText } from './index-file.js';
import { signaturesOf, verifySignatures, type ApkPublicKey } from './signature.js';
import { readTarFragment } from './tar-fragment.js';
import type { ApkPackage } from './types.js';

export interface ApkIndex {
  description: string;
  packages: ApkPackage[];
  /** The key whose signature verified. */
  signedBy: string;
}

/** Verifies and parses an index; `what` (its URL) names it in errors. */
export function readApkIndexArchive(bytes: Buffer, keyring: readonly ApkPublicKey[], repository: string, what: string): ApkIndex {
  const malformed = (err: unknown): never => {
    if (err instanceof GzipFormatError) throw new ApkError('malformed', `${what} is not an APKINDEX.tar.gz: ${err.message}`);
    throw err;
  };
  let signatureMember;
  try {
    signatureMember = readGzipMember(bytes, 0);
  } catch (err) {
    return malformed(err);
  }
  const signatures = signaturesOf(readTarFragment(signatureMember.data));
  if (signatures.length === 0 || signatureMember.end >= bytes.length) throw new ApkError('bad-signature', `${what} is not signed`);
  // The index member runs to the end of the file: check its signature before inflating
  // a byte of it, so a tampered index is reported as what it is.
  const signed = bytes.subarray(signatureMember.end);
  const signedBy = verifySignatures(signatures, signed, keyring, what);
  let members;
  try {
    members = splitGzipMembers(signed);
  } catch (err) {
    return malformed(err);
  }
  const entries = members.flatMap((m) => readTarFragment(m.data));
  const index = entries.find((e) => e.name === 'APKINDEX');
  if (!index) throw new ApkError('malformed', `${what} holds no APKINDEX file`);
  const description = entries.find((e) => e.name === 'DESCRIPTION')?.data.toString('utf8') ?? '';
  return { description, packages: parseApkIndexText(index.data.toString('utf8'), repository), signedBy };
}
