/**
 * Splits concatenated gzip members at their exact compressed boundaries.
 *
 * An .apk and an APKINDEX.tar.gz are several gzip members back to back, and the
 * signature, `C:` checksum and `datahash` cover the *compressed* bytes of one member.
 * Node's gunzip runs on across member boundaries without saying where they are, so each
 * member is parsed here by hand: the gzip header, then a raw inflate of the deflate body,
 * whose `bytesWritten` tells how much input the deflate stream consumed, then the 8-byte
 * trailer (CRC-32, size), which is checked.
 */
import { crc32, inflateRawSync } from 'node:zlib';

export class GzipFormatError extends Error {
  override name = 'GzipFormatError';
}

/** One gzip member: its compressed span in the input and its inflated bytes. */
export interface GzipMember {
  /** Offset of the member's first byte (the 0x1f of its header). */
  start: number;
  /** Offset just past its trailer. */
  end: number;
  data: Buffer;
}

const FTEXT_HCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;

/** Offset of the deflate body of the member starting at `start`; throws on a malformed header. */
export function gzipBodyOffset(buf: Buffer, start: number): number {
  if (buf.length - start < 10) throw new GzipFormatError(`truncated gzip header at byte ${start}`);
  if (buf[start] !== 0x1f || buf[start + 1] !== 0x8b || buf[start + 2] !== 8) {
    throw new GzipFormatError(`no gzip member at byte ${start}`);
  }
  const flags = buf[start + 3]!;
  let p = start + 10;
  const need = (n: number) => {
    if (p + n > buf.length) throw new GzipFormatError(`truncated gzip header at byte ${start}`);
  };
  if (flags & FEXTRA) {
    need(2);
    p += 2 + buf.readUInt16LE(p);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    const zero = buf.indexOf(0, p);
    if (zero < 0) throw new GzipFormatError(`truncated gzip header at byte ${start}`);
    p = zero + 1;
  }
  if (flags & FTEXT_HCRC) p += 2;
  need(0);
  return p;
}

/**
 * The member starting at `start`. `buf` may hold more bytes after it (further members).
 * Throws GzipFormatError when the member is malformed or does not end inside `buf`.
 */
export function readGzipMember(buf: Buffer, start: number, maxOutput = 64 * 1024 * 1024): GzipMember {
  const body = gzipBodyOffset(buf, start);
  let inflated: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    inflated = inflateRawSync(buf.subarray(body), { info: true, maxOutputLength: maxOutput }) as unknown as typeof inflated;
  } catch (err) {
    throw new GzipFormatError(`gzip member at byte ${start}: ${(err as Error).message}`);
  }
  const trailer = body + inflated.engine.bytesWritten;
  if (trailer + 8 > buf.length) throw new GzipFormatError(`gzip member at byte ${start} has no trailer`);
  const data = inflated.buffer;
  if (buf.readUInt32LE(trailer) !== crc32(data) >>> 0 || buf.readUInt32LE(trailer + 4) !== data.length % 2 ** 32) {
    throw new GzipFormatError(`gzip member at byte ${start} fails its CRC or size check`);
  }
  return { start, end: trailer + 8, data };
}

/** Every member of `buf`, in order (small inputs: indexes, the head of a package). */
export function splitGzipMembers(buf: Buffer, maxOutput = 512 * 1024 * 1024): GzipMember[] {
  const members: GzipMember[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const member = readGzipMember(buf, offset, maxOutput);
    members.push(member);
    offset = member.end;
  }
  return members;
}
