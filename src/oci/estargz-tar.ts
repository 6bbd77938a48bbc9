/**
 * A small streaming tar reader for the eStargz writer. It hands back each entry's header
 * blocks exactly as read (PAX and GNU long-name blocks included) together with the
 * parsed fields, so the writer can copy headers through untouched (like the reference
 * AppendTarLossLess) instead of re-encoding them: nothing an upstream layer said about a
 * file (binary xattrs, sub-second PAX times, long names, big ids) is lost.
 *
 * Field semantics follow Go's archive/tar, which the reference writer reads tars with.
 */
import type { Readable } from 'node:stream';

export const BLOCK = 512;

/** A layer that is not a well-formed tar stream: the producer's fault, not ours. */
export class TarFormatError extends Error {
  constructor(message: string) {
    super(`tar: ${message}`);
    this.name = 'TarFormatError';
  }
}

export type TocEntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarHeader {
  /** The entry's header blocks as read: extension headers (PAX `x`, GNU `L`/`K`) and the main header. */
  raw: Buffer[];
  /** Global PAX (`g`) header blocks met just before this entry; they belong to no entry but must be kept. */
  globalRaw: Buffer[];
  /** Name as stored (PAX path, GNU long name, or ustar prefix + name), not cleaned. */
  name: string;
  type: TocEntryType;
  /** The tar typeflag character as read. */
  typeflag: string;
  linkName: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Payload bytes that follow the header (0 for header-only types whatever the size field says, as in Go). */
  size: number;
  /** Modification time in whole seconds, rounded as Go's Time.Round(time.Second) does. */
  mtime: number;
  devMajor: number;
  devMinor: number;
  /** `SCHILY.xattr.*` PAX records, values as raw bytes (one shared empty map when there are none). */
  xattrs: ReadonlyMap<string, Buffer>;
}

/** Pull-style reads of exact byte counts from a stream, without copying large payloads. */
class ByteSource {
  private readonly iterator: AsyncIterator<Buffer | string>;
  private pending: Buffer = Buffer.alloc(0);
  private done = false;

  constructor(stream: Readable) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    while (this.pending.length === 0 && !this.done) {
      const next = await this.iterator.next();
      if (next.done) this.done = true;
      else this.pending = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    }
    return this.pending.length > 0;
  }

  /** Up to `max` bytes, or undefined at the end of the stream. */
  async readSome(max: number): Promise<Buffer | undefined> {
    if (!(await this.fill())) return undefined;
    const n = Math.min(max, this.pending.length);
    const out = this.pending.subarray(0, n);
    this.pending = this.pending.subarray(n);
    return out;
  }

  /** Exactly `n` bytes; a shorter result means the stream ended first. */
  async read(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const part = await this.readSome(n - got);
      if (!part) break;
      parts.push(part);
      got += part.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, got);
  }

  async skip(n: number): Promise<void> {
    while (n > 0) {
      const part = await this.readSome(n);
      if (!part) throw new TarFormatError('unexpected end of stream');
      n -= part.length;
    }
  }

  async drain(): Promise<void> {
    while (await this.readSome(1 << 20));
  }

  /** Stops reading early: lets the producer know nobody will consume the rest. */
  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}

/** Shared by every entry without xattrs: a layer of a million files need not hold a million empty maps. */
export const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();

const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);

/**
 * Reads a tar stream entry by entry. Call next() for each header, then readPayload()
 * until it returns undefined (next() skips whatever payload is left unread). The
 * end-of-archive blocks and anything after them are consumed but not returned.
 */
export class TarReader {
  private readonly source: ByteSource;
  private remaining = 0;
  private padding = 0;
  private global: Map<string, Buffer> = new Map();
  private ended = false;

  constructor(stream: Readable) {
    this.source = new ByteSource(stream);
  }

  async next(): Promise<TarHeader | undefined> {
    if (this.ended) return undefined;
    await this.source.skip(this.remaining + this.padding);
    this.remaining = this.padding = 0;

    const raw: Buffer[] = [];
    const globalRaw: Buffer[] = [];
    let pax: Map<string, Buffer> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await this.source.read(BLOCK);
      // A stream that stops at a block boundary without end blocks is accepted, as Go does.
      if (block.length === 0 && raw.length === 0) return this.end();
      if (block.length < BLOCK) throw new TarFormatError('unexpected end of stream inside a header');
      if (isZero(block)) {
        if (raw.length > 0) throw new TarFormatError('end-of-archive block after an extension header');
        return this.end();
      }
      verifyChecksum(block);
      const typeflag = String.fromCharCode(block[156]!);
      const size = parseNumeric(block.subarray(124, 136), 'size');
      if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
        if (size > 1 << 20) throw new TarFormatError(`${typeflag} extension header of ${size} bytes is too large`);
        const body = await this.source.read(size + padTo(size));
        if (body.length < size + padTo(size)) throw new TarFormatError('unexpected end of stream inside a header');
        const data = body.subarray(0, size);
        if (typeflag === 'g') {
          globalRaw.push(block, body);
          for (const [k, v] of parsePax(data)) this.global.set(k, v);
          continue;
        }
        raw.push(block, body);
        if (typeflag === 'x') pax = parsePax(data);
        else if (typeflag === 'L') longName = cString(data);
        else longLink = cString(data);
        continue;
      }
      raw.push(block);
      const header = this.parse(block, typeflag, size, raw, globalRaw, pax, longName, longLink);
      this.remaining = header.size;
      this.padding = padTo(header.size);
      return header;
    }
  }

  /** Up to `max` bytes of the current entry's payload; undefined once it is all read. */
  async readPayload(max: number): Promise<Buffer | undefined> {
    if (this.remaining === 0) return undefined;
    const part = await this.source.readSome(Math.min(max, this.remaining));
    if (!part) throw new TarFormatError('unexpected end of stream inside a file');
    this.remaining -= part.length;
    return part;
  }

  /** Stops early (on an error elsewhere): releases the input stream. */
  async close(): Promise<void> {
    this.ended = true;
    await this.source.close();
  }

  private async end(): Promise<undefined> {
    this.ended = true;
    // Read to the end so the producer (an HTTP body, a pipeline) completes normally.
    await this.source.drain();
    return undefined;
  }

  private parse(
    block: Buffer,
    typeflag: string,
    headerSize: number,
    raw: Buffer[],
    globalRaw: Buffer[],
    local: Map<string, Buffer> | undefined,
    longName: string | undefined,
    longLink: string | undefined,
  ): TarHeader {
    const records = new Map(this.global);
    // A global path/linkpath/size would apply one name to every later entry: ignored.
    for (const key of ['path', 'linkpath', 'size']) records.delete(key);
    for (const [k, v] of local ?? []) records.set(k, v);
    const record = (key: string): string | undefined => records.get(key)?.toString('utf8');
    for (const key of records.keys()) {
      if (key.startsWith('GNU.sparse.')) throw new TarFormatError('sparse files are not supported');
    }

    const magic = block.subarray(257, 263).toString('latin1');
    const ustar = magic === 'ustar\0';
    const gnu = magic === 'ustar ';
    let name = cString(block.subarray(0, 100));
    if (ustar) {
      // star puts a 131-byte prefix before its "tar\0" trailer; plain ustar has 155 bytes.
      const star = block.subarray(508, 512).toString('latin1') === 'tar\0';
      const prefix = cString(block.subarray(345, star ? 476 : 500));
      if (prefix) name = `${prefix}/${name}`;
    }
    name = record('path') ?? longName ?? name;
    const linkName = record('linkpath') ?? longLink ?? cString(block.subarray(157, 257));

    let type: TocEntryType;
    switch (typeflag) {
      case '0':
      case '\0':
      case '7': // contiguous file: a regular file to everyone but its original system
        type = typeflag === '\0' && name.endsWith('/') ? 'dir' : 'reg';
        break;
      case '1':
        type = 'hardlink';
        break;
      case '2':
        type = 'symlink';
        break;
      case '3':
        type = 'char';
        break;
      case '4':
        type = 'block';
        break;
      case '5':
        type = 'dir';
        break;
      case '6':
        type = 'fifo';
        break;
      default:
        throw new TarFormatError(`entry ${JSON.stringify(name)} has unsupported type ${JSON.stringify(typeflag)}`);
    }

    const paxSize = record('size');
    let size = paxSize !== undefined ? parseDecimal(paxSize, 'size') : headerSize;
    if (HEADER_ONLY.has(typeflag)) size = 0;
    const extended = ustar || gnu;
    let xattrs: ReadonlyMap<string, Buffer> = NO_XATTRS;
    for (const [k, v] of records) {
      if (!k.startsWith('SCHILY.xattr.')) continue;
      if (xattrs === NO_XATTRS) xattrs = new Map();
      (xattrs as Map<string, Buffer>).set(k.slice('SCHILY.xattr.'.length), v);
    }

    return {
      raw,
      globalRaw,
      name,
      type,
      typeflag,
      linkName,
      mode: parseNumeric(block.subarray(100, 108), 'mode'),
      uid: record('uid') !== undefined ? parseDecimal(record('uid')!, 'uid') : parseNumeric(block.subarray(108, 116), 'uid'),
      gid: record('gid') !== undefined ? parseDecimal(record('gid')!, 'gid') : parseNumeric(block.subarray(116, 124), 'gid'),
      uname: record('uname') ?? (extended ? cString(block.subarray(265, 297)) : ''),
      gname: record('gname') ?? (extended ? cString(block.subarray(297, 329)) : ''),
      size,
      mtime: record('mtime') !== undefined ? roundPaxTime(record('mtime')!) : parseNumeric(block.subarray(136, 148), 'mtime'),
      devMajor: extended ? parseNumeric(block.subarray(329, 337), 'devmajor') : 0,
      devMinor: extended ? parseNumeric(block.subarray(337, 345), 'devminor') : 0,
      xattrs,
    };
  }
}

/** Bytes of zero padding after `size` bytes of payload. */
export function padTo(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.subarray(0, end === -1 ? buf.length : end).toString('utf8');
}

/** POSIX sums unsigned bytes; old Sun tar summed signed ones. Either is accepted, as in Go. */
function verifyChecksum(block: Buffer): void {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  const stored = parseNumeric(block.subarray(148, 156), 'checksum');
  if (stored !== unsigned && stored !== signed) throw new TarFormatError('header checksum mismatch (not a tar stream, or corrupt)');
}

/** An octal field, or GNU base-256 when the high bit of the first byte is set. */
function parseNumeric(field: Buffer, what: string): number {
  if (field.length > 0 && (field[0]! & 0x80) !== 0) {
    const negative = (field[0]! & 0x40) !== 0;
    let value = 0n;
    for (let i = 0; i < field.length; i++) {
      let byte = i === 0 ? field[i]! & 0x7f : field[i]!;
      if (negative) byte ^= i === 0 ? 0x7f : 0xff;
      value = (value << 8n) | BigInt(byte);
    }
    if (negative) value = -value - 1n;
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new TarFormatError(`${what} field out of range`);
    }
    return Number(value);
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`invalid ${what} field ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

function parseDecimal(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new TarFormatError(`invalid PAX ${what} ${JSON.stringify(text)}`);
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new TarFormatError(`PAX ${what} out of range`);
  return value;
}

/** PAX `mtime` ("secs[.frac]") rounded to whole seconds like Go's Time.Round(time.Second): floor(t + 0.5). */
function roundPaxTime(text: string): number {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text);
  if (!m) throw new TarFormatError(`invalid PAX mtime ${JSON.stringify(text)}`);
  const seconds = Number(m[2]);
  const nanos = Number((m[3] ?? '').padEnd(9, '0').slice(0, 9));
  if (m[1] === '-') return -seconds - (nanos > 500_000_000 ? 1 : 0);
  return seconds + (nanos >= 500_000_000 ? 1 : 0);
}

/** PAX records: "<len> <key>=<value>\n", values kept as bytes (xattr values are binary). */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space === -1) throw new TarFormatError('malformed PAX record');
    const len = Number(data.subarray(pos, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= space - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new TarFormatError('malformed PAX record');
    }
    const record = data.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError('malformed PAX record');
    records.set(record.subarray(0, eq).toString('utf8'), Buffer.from(record.subarray(eq + 1)));
    pos += len;
  }
  return records;
}

/**
 * A plain ustar header as Go's tar.Writer writes one for a header that has only a name,
 * a type and a size (mode, ids and mtime zero): the landmark and TOC entries of the
 * reference writer, byte for byte.
 */
export function ustarHeader(name: string, size: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(name) > 100) throw new Error(`ustar name too long: ${name}`);
  block.write(name, 0, 'utf8');
  const octal = (offset: number, length: number, value: number): void => {
    block.write(value.toString(8).padStart(length - 1, '0'), offset, 'latin1');
  };
  octal(100, 8, 0); // mode
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  octal(124, 12, size);
  octal(136, 12, 0); // mtime
  block[156] = 0x30; // '0': regular file
  block.write('ustar\0' + '00', 257, 'latin1');
  octal(329, 8, 0); // devmajor
  octal(337, 8, 0); // devminor
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of block) sum += c;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return block;
}
