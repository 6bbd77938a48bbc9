/**
 * The head of an .apk on disk: the signature member (absent in unsigned packages), the
 * control member with `.PKGINFO`, and where the data member starts. Only the head is
 * read into memory; the data member stays on disk and is streamed when installed.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { ApkError } from './errors.js';
import { GzipFormatError, readGzipMember } from './gzip-members.js';
import { parsePkgInfo, type PkgInfo } from './pkginfo.js';
import { signaturesOf, verifySignatures, type ApkPublicKey, type ApkSignature } from './signature.js';
import { readTarFragment, type TarFragmentEntry } from './tar-fragment.js';
import type { ApkPackage } from './types.js';

export interface ApkHead {
  signatures: ApkSignature[];
  /** Compressed bytes of the control member: what is signed and what `C:` hashes. */
  controlBytes: Buffer;
  control: TarFragmentEntry[];
  pkginfo: PkgInfo;
  /** Offset of the first byte of the data member(s), which run to the end of the file. */
  dataOffset: number;
}

/** Largest signature + control head read into memory. */
const MAX_HEAD = 32 * 1024 * 1024;

/** Parses the head from bytes that start at the beginning of the file; throws GzipFormatError if they end too early. */
export function parseApkHead(buf: Buffer, what: string): ApkHead {
  const first = readGzipMember(buf, 0, MAX_HEAD);
  const firstEntries = readTarFragment(first.data);
  const signatures = signaturesOf(firstEntries);
  const control = signatures.length > 0 ? readGzipMember(buf, first.end, MAX_HEAD) : first;
  const entries = signatures.length > 0 ? readTarFragment(control.data) : firstEntries;
  const pkginfo = entries.find((e) => e.name === '.PKGINFO');
  if (!pkginfo) throw new ApkError('malformed', `${what} has no .PKGINFO in its control member`);
  return {
    signatures,
    controlBytes: Buffer.from(buf.subarray(control.start, control.end)),
    control: entries,
    pkginfo: parsePkgInfo(pkginfo.data.toString('utf8')),
    dataOffset: control.end,
  };
}

/** Reads just enough of the file at `path` to parse its head. */
export async function readApkHead(path: string, what: string): Promise<ApkHead> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    for (let want = 64 * 1024; ; want *= 4) {
      const length = Math.min(size, want, MAX_HEAD);
      const buf = Buffer.alloc(length);
      await file.read(buf, 0, length, 0);
      try {
        return parseApkHead(buf, what);
      } catch (err) {
        if (!(err instanceof GzipFormatError)) throw err;
        // A member cut off by our read length: read more, unless there is no more.
        if (length < size && length < MAX_HEAD) continue;
        throw new ApkError('malformed', `${what} is not an .apk: ${err.message}`);
      }
    }
  } finally {
    await file.close();
  }
}

/** `Q1` + base64 SHA-1 (or `Q2` + base64 SHA-256) of the control member, as an index's `C:` writes it. */
export function controlChecksum(controlBytes: Buffer, form: 'Q1' | 'Q2' = 'Q1'): string {
  return form + createHash(form === 'Q1' ? 'sha1' : 'sha256').update(controlBytes).digest('base64');
}

/**
 * Checks the head against the index record and the keyring: a trusted signature over the
 * control member, and the control member's checksum equal to the index's `C:`. The data
 * member is bound by `datahash`, checked while it is read (see package-data.ts).
 */
export function verifyApkHead(head: ApkHead, record: ApkPackage, keyring: readonly ApkPublicKey[], what: string): string {
  const signedBy = verifySignatures(head.signatures, head.controlBytes, keyring, what);
  const form = record.checksum.startsWith('Q2') ? 'Q2' : 'Q1';
  const actual = controlChecksum(head.controlBytes, form);
  if (actual !== record.checksum) {
    throw new ApkError('checksum-mismatch', `${what}: control checksum ${actual} does not match the index's C:${record.checksum}`);
  }
  if (head.pkginfo.name !== record.name || head.pkginfo.version !== record.version) {
    throw new ApkError('checksum-mismatch', `${what} holds ${head.pkginfo.name}-${head.pkginfo.version}, not ${record.name}-${record.version}`);
  }
  return signedBy;
}
