/**
 * Reads the small tar fragments of an .apk's signature and control members in memory.
 * Those fragments are "cut" (no end-of-archive blocks), which streaming tar readers treat
 * as truncated; this reader simply stops at the end of the bytes. Only what those members
 * hold is understood: regular files, PAX and GNU long names.
 */

export interface TarFragmentEntry {
  name: string;
  /** tar type flag: '0' regular file, '5' directory, … */
  type: string;
  data: Buffer;
}

const BLOCK = 512;

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
}

function octal(block: Buffer, offset: number, length: number): number {
  const text = field(block, offset, length).trim();
  return text ? parseInt(text, 8) : 0;
}

function paxPath(data: Buffer): string | undefined {
  let p = 0;
  let found: string | undefined;
  while (p < data.length) {
    const space = data.indexOf(0x20, p);
    if (space < 0) break;
    const length = Number(data.subarray(p, space).toString('ascii'));
    if (!length) break;
    const record = data.subarray(space + 1, p + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === 'path') found = record.slice(eq + 1);
    p += length;
  }
  return found;
}

export function readTarFragment(buf: Buffer): TarFragmentEntry[] {
  const entries: TarFragmentEntry[] = [];
  let offset = 0;
  let longName: string | undefined;
  while (offset + BLOCK <= buf.length) {
    const header = buf.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break;
    const size = octal(header, 124, 12);
    const type = String.fromCharCode(header[156] || 0x30);
    const dataStart = offset + BLOCK;
    if (dataStart + size > buf.length) throw new Error(`tar entry at byte ${offset} runs past the end of its member`);
    const data = buf.subarray(dataStart, dataStart + size);
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      longName = paxPath(data) ?? longName;
      continue;
    }
    if (type === 'L') {
      longName = field(data, 0, data.length);
      continue;
    }
    if (type === 'g') continue;
    const prefix = field(header, 345, 155);
    const name = longName ?? (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100));
    longName = undefined;
    entries.push({ name, type, data });
  }
  return entries;
}
