/**
 * Tar header encoding for the flattened layer (image-format spec §8.3): a plain USTAR
 * header when every field fits, else a PAX `x` header first carrying the fields that do
 * not (and always the xattrs, as `SCHILY.xattr.*` with their raw bytes).
 *
 * Written here rather than with tar-stream's packer because that packer turns mode 0
 * into 0644/0755, truncates large uids, and encodes PAX values as UTF-8 text, which
 * corrupts binary xattrs such as `security.capability`.
 */

import type { Attrs } from './flatten-tree.js';

export const BLOCK = 512;

/** Two zero blocks end an archive (written exactly, as Go does, with no record padding). */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

export type OutputType = 'reg' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

/** A node's attributes (mode, owners, mtime) plus what only the tar header carries. */
export interface OutputHeader extends Omit<Attrs, 'xattrs'> {
  /** Root-relative, cleaned; directories get a trailing `/` added here. Empty = the root (`./`). */
  path: string;
  type: OutputType;
  /** Payload bytes (regular files only). */
  size: number;
  /** Symlink target, or the hardlink's root-relative target path. */
  linkName: string;
  devMajor: number;
  devMinor: number;
  xattrs: ReadonlyMap<string, Buffer>;
}

const TYPEFLAG: Record<OutputType, string> = { reg: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };

/** Largest value of an octal field of `width` bytes (one byte is the terminator). */
const octalMax = (width: number): number => 8 ** (width - 1) - 1;

const isAscii = (s: string): boolean => /^[\x00-\x7f]*$/.test(s);

/** Zero padding after `size` payload bytes. */
export function paddingFor(size: number): Buffer {
  const pad = (BLOCK - (size % BLOCK)) % BLOCK;
  return pad === 0 ? EMPTY : Buffer.alloc(pad);
}
const EMPTY = Buffer.alloc(0);

/** Splits a name into USTAR prefix (≤155) and name (≤100) at a slash, or undefined. */
function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  if (!isAscii(name)) return undefined;
  if (name.length <= 100) return { prefix: '', name };
  // The prefix must end at a slash; pick the longest prefix ≤155 that leaves a name ≤100.
  for (let i = Math.min(name.length - 1, 155); i > 0; i--) {
    if (name[i] === '/' && name.length - i - 1 <= 100 && name.length - i - 1 > 0) {
      return { prefix: name.slice(0, i), name: name.slice(i + 1) };
    }
  }
  return undefined;
}

/** The header block(s) of one entry: optional PAX `x` header + body, then the USTAR header. */
export function encodeHeader(h: OutputHeader): Buffer {
  const name = h.type === 'dir' ? (h.path === '' ? './' : `${h.path}/`) : h.path;
  const pax: Array<[string, Buffer]> = [];
  const needPax = (key: string, value: string | Buffer) => pax.push([key, Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8')]);

  const split = splitUstarName(name);
  if (!split) needPax('path', name);
  const linkFits = isAscii(h.linkName) && h.linkName.length <= 100;
  if (!linkFits) needPax('linkpath', h.linkName);
  const idMax = octalMax(8);
  if (!Number.isInteger(h.uid) || h.uid < 0 || h.uid > idMax) needPax('uid', String(h.uid));
  if (!Number.isInteger(h.gid) || h.gid < 0 || h.gid > idMax) needPax('gid', String(h.gid));
  if (h.size > octalMax(12)) needPax('size', String(h.size));
  if (h.mtime < 0 || h.mtime > octalMax(12)) needPax('mtime', String(h.mtime));
  if (!isAscii(h.uname) || h.uname.length > 32) needPax('uname', h.uname);
  if (!isAscii(h.gname) || h.gname.length > 32) needPax('gname', h.gname);
  // Sorted so the bytes do not depend on the order the layer listed its xattrs in.
  for (const key of [...h.xattrs.keys()].sort()) needPax(`SCHILY.xattr.${key}`, h.xattrs.get(key)!);

  const ustar = ustarBlock({
    name: split ?? { prefix: '', name: truncate(name, 100) },
    mode: h.mode & 0o7777,
    uid: h.uid >= 0 && h.uid <= idMax ? h.uid : 0,
    gid: h.gid >= 0 && h.gid <= idMax ? h.gid : 0,
    size: h.size <= octalMax(12) ? h.size : 0,
    mtime: h.mtime >= 0 && h.mtime <= octalMax(12) ? h.mtime : 0,
    typeflag: TYPEFLAG[h.type],
    linkName: linkFits ? h.linkName : truncate(h.linkName, 100),
    uname: truncate(h.uname, 32),
    gname: truncate(h.gname, 32),
    devMajor: h.devMajor <= idMax ? h.devMajor : 0,
    devMinor: h.devMinor <= idMax ? h.devMinor : 0,
  });
  if (pax.length === 0) return ustar;

  const body = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const base = name.replace(/\/$/, '').split('/').pop() || '.';
  const paxHeader = ustarBlock({
    name: { prefix: '', name: truncate(`PaxHeaders.0/${base}`, 100) },
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: 0,
    typeflag: 'x',
    linkName: '',
    uname: '',
    gname: '',
    devMajor: 0,
    devMinor: 0,
  });
  return Buffer.concat([paxHeader, body, paddingFor(body.length), ustar]);
}

/** "<len> <key>=<value>\n" where len counts its own digits too. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(` ${key}=`) + value.length + 1;
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')]);
}

/** At most `max` bytes of the ASCII-safe form of `s` (only used where PAX carries the real value). */
function truncate(s: string, max: number): string {
  return s.replace(/[^\x00-\x7f]/g, '_').slice(0, max);
}

interface UstarFields {
  name: { prefix: string; name: string };
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkName: string;
  uname: string;
  gname: string;
  devMajor: number;
  devMinor: number;
}

function ustarBlock(f: UstarFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  const octal = (offset: number, width: number, value: number) =>
    block.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, width, 'latin1');
  block.write(f.name.name, 0, 100, 'latin1');
  octal(100, 8, f.mode);
  octal(108, 8, f.uid);
  octal(116, 8, f.gid);
  octal(124, 12, f.size);
  octal(136, 12, f.mtime);
  block.write(f.typeflag, 156, 1, 'latin1');
  block.write(f.linkName, 157, 100, 'latin1');
  block.write('ustar\x0000', 257, 8, 'latin1');
  block.write(f.uname, 265, 32, 'latin1');
  block.write(f.gname, 297, 32, 'latin1');
  octal(329, 8, f.devMajor);
  octal(337, 8, f.devMinor);
  block.write(f.name.prefix, 345, 155, 'latin1');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return block;
}
