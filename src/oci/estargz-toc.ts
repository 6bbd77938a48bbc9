/**
 * The eStargz table of contents (`stargz.index.json`) and footer: types, the writer's
 * serialisation, and a strict parser for reading TOCs back (tests, and any host that
 * needs to look inside an existing eStargz layer). See shared/specs/estargz.md §3-4.
 */
import { gunzipSync } from 'node:zlib';
import { isSha256Digest } from './digest.js';

export const TOC_TAR_NAME = 'stargz.index.json';
export const FOOTER_SIZE = 51;
export const LEGACY_FOOTER_SIZE = 47;
export const PREFETCH_LANDMARK = '.prefetch.landmark';
export const NO_PREFETCH_LANDMARK = '.no.prefetch.landmark';
/** The one byte a landmark file holds. */
export const LANDMARK_CONTENTS = 0x0f;
export const TOC_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest';
export const UNCOMPRESSED_SIZE_ANNOTATION = 'io.containers.estargz.uncompressed-size';

export type TocEntryKind = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'chunk';

/** One TOC entry; every field but name and type is omitted from the JSON when zero or empty. */
export interface TocEntry {
  name: string;
  type: TocEntryKind;
  size?: number;
  modtime?: string;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  userName?: string;
  groupName?: string;
  offset?: number;
  /** Newer writers (min-chunk-size mode) only; never written here. */
  innerOffset?: number;
  devMajor?: number;
  devMinor?: number;
  /** Attribute name → base64 of the raw value. */
  xattrs?: Record<string, string>;
  digest?: string;
  chunkOffset?: number;
  chunkSize?: number;
  chunkDigest?: string;
}

export interface Toc {
  version: 1;
  entries: TocEntry[];
}

/** JSON field order of the reference's Go struct, so our TOC reads like theirs. */
const FIELD_ORDER: (keyof TocEntry)[] = [
  'name', 'type', 'size', 'modtime', 'linkName', 'mode', 'uid', 'gid', 'userName', 'groupName', 'offset',
  'innerOffset', 'devMajor', 'devMinor', 'xattrs', 'digest', 'chunkOffset', 'chunkSize', 'chunkDigest',
];

/**
 * The TOC bytes as the reference writes them (Go's json.MarshalIndent with a tab, no
 * trailing newline): zero fields dropped, Go's field order, map keys sorted, and Go's
 * HTML-safe escapes. The TOC digest annotation is the sha256 of exactly these bytes.
 */
export function serializeToc(toc: Toc): Buffer {
  const entries = toc.entries.map((entry) => {
    const out: Record<string, unknown> = {};
    for (const key of FIELD_ORDER) {
      const value = entry[key];
      if (key === 'name' || key === 'type') out[key] = value ?? '';
      else if (key === 'xattrs') {
        const names = Object.keys(entry.xattrs ?? {}).sort();
        if (names.length > 0) out.xattrs = Object.fromEntries(names.map((n) => [n, entry.xattrs![n]]));
      } else if (value !== undefined && value !== 0 && value !== '') out[key] = value;
    }
    return out;
  });
  const json = JSON.stringify({ version: toc.version, entries }, null, '\t').replace(
    /[<>&\u2028\u2029]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
  );
  return Buffer.from(json, 'utf8');
}

const KINDS = new Set<TocEntryKind>(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk']);
const INT_FIELDS = ['size', 'mode', 'uid', 'gid', 'offset', 'innerOffset', 'devMajor', 'devMinor', 'chunkOffset', 'chunkSize'] as const;
const STRING_FIELDS = ['modtime', 'linkName', 'userName', 'groupName', 'digest', 'chunkDigest'] as const;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

/**
 * Parses and checks TOC JSON. Accepts what the reference reader accepts (legacy stargz
 * TOCs without chunkDigest, the runtime-only `NumLink` field, unknown fields), and
 * refuses what would make a reader misplace bytes: a wrong version, unknown entry
 * types, non-integer or negative numbers, malformed digests, a chunk with no file
 * before it, or a chunked file whose chunks do not tile it.
 */
export function parseToc(json: Buffer | string): Toc {
  const doc = JSON.parse(typeof json === 'string' ? json : json.toString('utf8')) as unknown;
  if (!isObject(doc)) throw new Error('TOC: not a JSON object');
  if (doc.version !== 1) throw new Error(`TOC: version ${JSON.stringify(doc.version)}, want 1`);
  if (!Array.isArray(doc.entries)) throw new Error('TOC: entries is not an array');
  const entries: TocEntry[] = [];
  let file: { entry: TocEntry; next: number } | undefined; // the reg entry chunks continue
  const finishFile = (): void => {
    if (file && file.next !== file.entry.size) {
      throw new Error(`TOC: chunks of ${file.entry.name} end at ${file.next}, size ${file.entry.size}`);
    }
    file = undefined;
  };
  doc.entries.forEach((raw: unknown, i: number) => {
    const where = `TOC entry ${i}`;
    if (!isObject(raw)) throw new Error(`${where}: not an object`);
    if (typeof raw.name !== 'string') throw new Error(`${where}: name is not a string`);
    if (typeof raw.type !== 'string' || !KINDS.has(raw.type as TocEntryKind)) {
      throw new Error(`${where} (${raw.name}): unknown type ${JSON.stringify(raw.type)}`);
    }
    const entry: TocEntry = { name: raw.name, type: raw.type as TocEntryKind };
    for (const key of INT_FIELDS) {
      const value = raw[key];
      if (value === undefined) continue;
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new Error(`${where} (${raw.name}): ${key} ${JSON.stringify(value)} is not a non-negative integer`);
      }
      entry[key] = value;
    }
    for (const key of STRING_FIELDS) {
      const value = raw[key];
      if (value === undefined) continue;
      if (typeof value !== 'string') throw new Error(`${where} (${raw.name}): ${key} is not a string`);
      entry[key] = value;
    }
    if (entry.modtime && !RFC3339.test(entry.modtime)) throw new Error(`${where} (${raw.name}): modtime ${entry.modtime} is not RFC 3339`);
    for (const key of ['digest', 'chunkDigest'] as const) {
      if (entry[key] !== undefined && !isSha256Digest(entry[key]!)) throw new Error(`${where} (${raw.name}): bad ${key} ${entry[key]}`);
    }
    if (raw.xattrs !== undefined) {
      if (!isObject(raw.xattrs)) throw new Error(`${where} (${raw.name}): xattrs is not an object`);
      const xattrs: Record<string, string> = {};
      for (const [k, v] of Object.entries(raw.xattrs)) {
        if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new Error(`${where} (${raw.name}): xattr ${k} is not base64`);
        xattrs[k] = v;
      }
      entry.xattrs = xattrs;
    }

    if (entry.type === 'chunk') {
      if (!file) throw new Error(`${where} (${raw.name}): chunk without a regular file before it`);
      if ((entry.chunkOffset ?? 0) !== file.next) {
        throw new Error(`${where} (${raw.name}): chunk at ${entry.chunkOffset ?? 0}, expected ${file.next}`);
      }
      file.next += chunkLength(entry, file.entry);
      if (!entry.offset) throw new Error(`${where} (${raw.name}): chunk without an offset`);
    } else {
      finishFile();
      if (entry.type === 'reg' && (entry.size ?? 0) > 0) {
        if (!entry.offset) throw new Error(`${where} (${raw.name}): non-empty file without an offset`);
        file = { entry, next: chunkLength(entry, entry) };
      }
      if ((entry.type === 'symlink' || entry.type === 'hardlink') && !entry.linkName) {
        throw new Error(`${where} (${raw.name}): ${entry.type} without linkName`);
      }
    }
    entries.push(entry);
  });
  finishFile();
  return { version: 1, entries };
}

/** chunkSize 0 (or absent) means "to the end of the file". */
function chunkLength(chunk: TocEntry, file: TocEntry): number {
  const size = file.size ?? 0;
  const start = chunk.chunkOffset ?? 0;
  const length = chunk.chunkSize ? chunk.chunkSize : size - start;
  if (length <= 0 || start + length > size) throw new Error(`TOC: chunk of ${file.name} at ${start} overruns size ${size}`);
  return length;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The 51-byte footer: an empty gzip member whose extra field holds the TOC offset (spec §4). */
export function footerBytes(tocOffset: number): Buffer {
  const subfield = tocOffset.toString(16).padStart(16, '0') + 'STARGZ';
  if (subfield.length !== 22) throw new Error(`TOC offset ${tocOffset} does not fit the footer`);
  return Buffer.concat([
    Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff, 0x1a, 0x00, 0x53, 0x47, 0x16, 0x00]),
    Buffer.from(subfield, 'latin1'),
    Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
  ]);
}

/**
 * The TOC offset recorded in a blob's tail: the 51-byte eStargz footer, else the 47-byte
 * legacy stargz one (whose extra field is the bare string). Undefined when neither.
 */
export function parseFooter(blobTail: Buffer): { tocOffset: number; footerSize: number } | undefined {
  for (const footerSize of [FOOTER_SIZE, LEGACY_FOOTER_SIZE]) {
    if (blobTail.length < footerSize) continue;
    const footer = blobTail.subarray(blobTail.length - footerSize);
    if (footer[0] !== 0x1f || footer[1] !== 0x8b || footer[2] !== 0x08 || (footer[3]! & 0x04) === 0) continue;
    try {
      if (gunzipSync(footer).length !== 0) continue; // also checks the member's CRC and length
    } catch {
      continue;
    }
    const xlen = footer.readUInt16LE(10);
    let subfield: Buffer;
    if (footerSize === FOOTER_SIZE) {
      if (xlen !== 26 || footer[12] !== 0x53 || footer[13] !== 0x47 || footer.readUInt16LE(14) !== 22) continue;
      subfield = footer.subarray(16, 38);
    } else {
      if (xlen !== 22) continue;
      subfield = footer.subarray(12, 34);
    }
    const text = subfield.toString('latin1');
    if (!/^[0-9a-fA-F]{16}STARGZ$/.test(text)) continue;
    const tocOffset = parseInt(text.slice(0, 16), 16);
    if (!Number.isSafeInteger(tocOffset)) continue;
    return { tocOffset, footerSize };
  }
  return undefined;
}

/**
 * Reads the TOC out of a whole blob held in memory (tests and small layers): footer →
 * TOC member → tar entry `stargz.index.json` → JSON. tocJSON is the exact bytes the TOC
 * digest covers.
 */
export function readToc(blob: Buffer): { toc: Toc; tocJSON: Buffer; tocOffset: number; footerSize: number } {
  const footer = parseFooter(blob.subarray(Math.max(0, blob.length - FOOTER_SIZE)));
  if (!footer) throw new Error('not an eStargz blob: no stargz footer');
  const end = blob.length - footer.footerSize;
  if (footer.tocOffset >= end) throw new Error(`TOC offset ${footer.tocOffset} is beyond the blob`);
  const tar = gunzipSync(blob.subarray(footer.tocOffset, end));
  const name = tar.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
  if (name !== TOC_TAR_NAME) throw new Error(`TOC tar entry is named ${JSON.stringify(name)}, want ${TOC_TAR_NAME}`);
  const size = parseInt(tar.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
  if (!Number.isSafeInteger(size) || 512 + size > tar.length) throw new Error('TOC tar entry is truncated');
  const tocJSON = tar.subarray(512, 512 + size);
  return { toc: parseToc(tocJSON), tocJSON, ...footer };
}
