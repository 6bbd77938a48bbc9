/**
 * The data member of an .apk, read from disk as a stream: its SHA-256 (the `.PKGINFO`
 * `datahash`) and the list of what it installs, with each file's
 * `APK-TOOLS.checksum.SHA1` (what the installed database records). Node's gunzip is
 * right here: the data part is everything after the control member, and if a packer
 * split it into several gzip members they still form one tar.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { ApkError } from './errors.js';

export type DataEntryType = 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';

export interface DataEntry {
  /** Path relative to the root, no leading `./` or `/`, no trailing `/`. */
  path: string;
  type: DataEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  linkname?: string;
  /** Hex SHA-1 from the PAX header `APK-TOOLS.checksum.SHA1`, when the packer wrote one. */
  sha1?: string;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
}

export interface ScannedData {
  /** Hex SHA-256 of the compressed data bytes. */
  sha256: string;
  entries: DataEntry[];
}

export function normalisePath(name: string): string {
  return name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
}

const TYPES = new Set<string>(['file', 'directory', 'symlink', 'link', 'character-device', 'block-device', 'fifo']);

export function toDataEntry(header: tar.Header): DataEntry | undefined {
  const path = normalisePath(header.name);
  const type = header.type === 'contiguous-file' ? 'file' : header.type;
  if (!path || !type || !TYPES.has(type)) return undefined;
  const pax = header.pax as Record<string, string> | null | undefined;
  const sha1 = pax?.['APK-TOOLS.checksum.SHA1'];
  return {
    path,
    type: type as DataEntryType,
    mode: (header.mode ?? 0o644) & 0o7777,
    uid: header.uid ?? 0,
    gid: header.gid ?? 0,
    size: header.size ?? 0,
    mtime: header.mtime ?? new Date(0),
    ...(header.linkname ? { linkname: header.linkname } : {}),
    ...(sha1 ? { sha1: sha1.toLowerCase() } : {}),
    ...(header.uname ? { uname: header.uname } : {}),
    ...(header.gname ? { gname: header.gname } : {}),
    ...(header.devmajor ? { devmajor: header.devmajor } : {}),
    ...(header.devminor ? { devminor: header.devminor } : {}),
  };
}

/** The data member's tar, uncompressed, streamed from the file. */
/** Big inflate chunks: fewer, larger buffers through the tar reader (as derived.ts does for layers). */
const INFLATE = { chunkSize: 256 * 1024 };

export function openDataTar(path: string, offset: number): Readable {
  const gunzip = createGunzip(INFLATE);
  const file = createReadStream(path, { start: offset, highWaterMark: 1 << 20 });
  file.on('error', (err) => gunzip.destroy(err));
  return file.pipe(gunzip);
}

/** Hashes the compressed data and lists its entries in one read of the file. */
export async function scanApkData(path: string, offset: number, what: string): Promise<ScannedData> {
  const hash = createHash('sha256');
  const entries: DataEntry[] = [];
  const extract = tar.extract();
  let escape: string | undefined;
  extract.on('entry', (header, stream, next) => {
    const entry = toDataEntry(header);
    // Every path must stay inside the image's root.
    if (entry?.path.split('/').includes('..')) escape ??= entry.path;
    if (entry) entries.push(entry);
    stream.on('end', next);
    stream.resume();
  });
  const tee = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(path, { start: offset, highWaterMark: 1 << 20 }), tee, createGunzip(INFLATE), extract);
  } catch (err) {
    throw new ApkError('malformed', `${what}: data part is not a gzip tar: ${(err as Error).message}`);
  }
  if (escape !== undefined) throw new ApkError('malformed', `${what} has an entry outside the root: ${escape}`);
  return { sha256: hash.digest('hex'), entries };
}

/** Throws unless the data hash matches `.PKGINFO`'s `datahash` (when the package has one). */
export function checkDataHash(scanned: ScannedData, datahash: string | undefined, what: string): void {
  if (datahash && datahash !== scanned.sha256) {
    throw new ApkError('checksum-mismatch', `${what}: data SHA-256 ${scanned.sha256} does not match the datahash ${datahash} it was signed with`);
  }
}
