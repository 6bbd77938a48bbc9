/**
 * The eStargz layer writer: an uncompressed tar in, a lazily pullable gzip layer out
 * (shared/specs/estargz.md). The blob is one gzip stream to any ordinary client, but made
 * of many gzip members so that each file chunk can be fetched by Range and gunzipped on
 * its own; a TOC (`stargz.index.json`, last tar entry) lists every entry with the
 * compressed offset of its member, and a 51-byte footer points at the TOC.
 *
 * Layout, as the reference writer (stargz-snapshotter estargz.Writer) makes it:
 *
 *   [gz: hdr(.no.prefetch.landmark)] [gz: 0x0f pad hdr(dir) hdr(a)] [gz: a pad hdr(big)]
 *   [gz: big chunk 0] [gz: big chunk 1 pad hdr(...)] ... [gz: tar{stargz.index.json} EOF] [footer]
 *
 * Headers are copied from the input byte for byte (the reference's lossless mode), with
 * the input's end-of-archive blocks dropped so that the whole blob decompresses to one
 * tar: the entries, then the TOC entry, then EOF. Offsets are only known while writing,
 * so every member is compressed and counted before the next one starts; nothing larger
 * than one chunk (plus a bounded run of headers) is held in memory.
 */
import { createHash, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzip, gzipSync } from 'node:zlib';
import type { ContentStore } from '../content/store.js';
import { sha256Digest } from './digest.js';
import type { WrittenLayer } from './layer.js';
import type { ContentBudget } from './content-budget.js';
import { BLOCK, NO_XATTRS, TarFormatError, TarReader, padTo, ustarHeader, type TarHeader } from './estargz-tar.js';
import {
  LANDMARK_CONTENTS,
  NO_PREFETCH_LANDMARK,
  PREFETCH_LANDMARK,
  TOC_DIGEST_ANNOTATION,
  TOC_TAR_NAME,
  UNCOMPRESSED_SIZE_ANNOTATION,
  footerBytes,
  serializeToc,
  type Toc,
  type TocEntry,
} from './estargz-toc.js';

export { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION } from './estargz-toc.js';

export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

export interface EstargzLayerOptions {
  /** Largest uncompressed file chunk per gzip member (default 4 MiB, as the reference). */
  chunkSize?: number;
  /**
   * gzip level 0-9. Default 6, not the reference's 9: this runs while a client waits for
   * its pull, and 9 costs several times the CPU for a few percent of size.
   */
  gzipLevel?: number;
  /** Counts every entry read (and fails the layer past its limit), so the TOC cannot outgrow it. */
  budget?: ContentBudget;
}

export interface WrittenEstargzLayer extends WrittenLayer {
  /** sha256 of the TOC JSON bytes (the toc.digest annotation). */
  tocDigest: string;
  /** For the layer's descriptor: TOC digest and uncompressed size, as snapshotters expect. */
  annotations: Record<string, string>;
}

/**
 * Rewrites an uncompressed layer tar as an eStargz blob and stores it. diffID and
 * uncompressedSize describe the blob's own decompressed stream (which, unlike the
 * input, holds the landmark and TOC entries): that is what the config's diff_ids needs.
 */
export async function writeEstargzLayer(
  store: ContentStore,
  tar: Readable,
  options: EstargzLayerOptions = {},
): Promise<WrittenEstargzLayer> {
  const writer = new EstargzWriter(options);
  const body = Readable.from(writer.blob(tar), { objectMode: false });
  let blob: { digest: string; size: number };
  try {
    blob = await store.putBlob(body);
  } catch (err) {
    // The store gave up (or the writer failed): stop the generator, which releases the input.
    body.destroy();
    throw err;
  }
  const { diffID, uncompressedSize, tocDigest } = writer.result();
  return {
    digest: blob.digest,
    size: blob.size,
    diffID,
    uncompressedSize,
    tocDigest,
    annotations: {
      [TOC_DIGEST_ANNOTATION]: tocDigest,
      [UNCOMPRESSED_SIZE_ANNOTATION]: String(uncompressedSize),
    },
  };
}

const gzipAsync = promisify(gzip);
/** Below this, compressing on the main thread is cheaper than a thread-pool round trip. */
const SYNC_GZIP_LIMIT = 64 * 1024;

/** Uncompressed bytes and members being compressed at once: enough for every core, bounded memory. */
const MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024;
const MAX_IN_FLIGHT_MEMBERS = 64;
const DROPPED = new Set([TOC_TAR_NAME, PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK]);
/**
 * Headers of entries without payload (dirs, links, empty files) share the open member.
 * Past this many bytes of them a new member starts, so a layer of a million directories
 * is not held in memory; a boundary between headers is harmless to readers, which only
 * start at TOC offsets and gunzip across member ends.
 */
const MAX_HEADER_RUN = 1024 * 1024;

/** Where an entry's payload comes from: the input tar, or bytes of our own (the landmark). */
type PayloadSource = (max: number) => Promise<Buffer | undefined>;

/** One blob's worth of state: the open member, the compressed offset, the TOC so far. */
class EstargzWriter {
  private readonly chunkSize: number;
  private readonly level: number;
  private readonly budget?: ContentBudget;
  /** Compressed bytes emitted so far: the offset at which the next emitted member starts. */
  private compressed = 0;
  /** Members being compressed, oldest first, with the TOC entries that start at each. */
  private readonly inFlight: { gz: Promise<Buffer>; bytes: number; entries: TocEntry[] }[] = [];
  private inFlightBytes = 0;
  /** Chunk entries whose data opens the member being assembled. */
  private startsNextMember: TocEntry[] = [];
  private readonly diff = createHash('sha256');
  private uncompressed = 0;
  /** Uncompressed bytes of the member being assembled. */
  private member: Buffer[] = [];
  private memberLength = 0;
  /** Header bytes written since the last payload. */
  private headerRun = 0;
  private readonly entries: TocEntry[] = [];
  private readonly lastUserName = new Map<number, string>();
  private readonly lastGroupName = new Map<number, string>();
  private done?: { diffID: string; uncompressedSize: number; tocDigest: string };

  constructor(options: EstargzLayerOptions) {
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.level = options.gzipLevel ?? 6;
    this.budget = options.budget;
    if (!Number.isSafeInteger(this.chunkSize) || this.chunkSize < 1) throw new Error(`invalid eStargz chunk size ${options.chunkSize}`);
    if (!Number.isInteger(this.level) || this.level < 0 || this.level > 9) throw new Error(`invalid gzip level ${options.gzipLevel}`);
  }

  result(): { diffID: string; uncompressedSize: number; tocDigest: string } {
    if (!this.done) throw new Error('eStargz blob not finished');
    return this.done;
  }

  /** The blob's bytes, one gzip member at a time. */
  async *blob(tar: Readable): AsyncGenerator<Buffer> {
    const reader = new TarReader(tar);
    let finished = false;
    try {
      // No prefetch list, so the reference's Build puts this landmark first.
      const landmark = Buffer.from([LANDMARK_CONTENTS]);
      let landmarkRead = false;
      yield* this.appendEntry(syntheticHeader(NO_PREFETCH_LANDMARK, landmark.length), async () => {
        if (landmarkRead) return undefined;
        landmarkRead = true;
        return landmark;
      });

      for (let header = await reader.next(); header; header = await reader.next()) {
        this.budget?.countEntry();
        if (DROPPED.has(cleanEntryName(header.name))) {
          // A layer that already is eStargz: its TOC and landmarks describe the old blob.
          for (const block of header.globalRaw) this.write(block);
          continue;
        }
        yield* this.appendEntry(header, (max) => reader.readPayload(max));
      }
      yield* this.closeMember();
      yield* this.emitMembers(0);

      // The TOC member: a one-entry tar, with the end-of-archive blocks for the whole stream.
      const tocOffset = this.compressed;
      const toc: Toc = { version: 1, entries: this.entries };
      const tocJSON = serializeToc(toc);
      this.write(ustarHeader(TOC_TAR_NAME, tocJSON.length));
      this.write(tocJSON);
      this.write(Buffer.alloc(padTo(tocJSON.length) + 2 * BLOCK));
      yield* this.closeMember();
      yield* this.emitMembers(0);
      yield footerBytes(tocOffset);

      this.done = {
        diffID: 'sha256:' + this.diff.digest('hex'),
        uncompressedSize: this.uncompressed,
        tocDigest: sha256Digest(tocJSON),
      };
      finished = true;
    } finally {
      if (!finished) await reader.close();
    }
  }

  private async *appendEntry(header: TarHeader, payload: PayloadSource): AsyncGenerator<Buffer> {
    if (this.headerRun >= MAX_HEADER_RUN) yield* this.closeMember();
    for (const block of [...header.globalRaw, ...header.raw]) {
      this.write(block);
      this.headerRun += block.length;
    }

    const entry = this.tocEntry(header);
    if (header.type !== 'reg') {
      this.entries.push(entry);
      return;
    }
    const whole = createHash('sha256');
    if (header.size === 0) this.entries.push(entry);
    let current = entry;
    for (let written = 0; written < header.size; ) {
      // Each chunk starts a member, so its offset is a place a reader can start gunzipping.
      yield* this.closeMember();
      const remain = header.size - written;
      let length = this.chunkSize;
      // As the reference: chunkSize is left out ("to end of file") only on a short last chunk.
      if (remain < length) length = remain;
      else current.chunkSize = length;
      // Its compressed offset is known once the members before it are compressed.
      this.startsNextMember.push(current);
      current.chunkOffset = written;
      this.headerRun = 0;
      const chunk = createHash('sha256');
      for (let got = 0; got < length; ) {
        const part = await payload(length - got);
        if (!part) throw new TarFormatError(`${header.name} ends before its ${header.size} bytes`);
        chunk.update(part);
        whole.update(part);
        this.write(part);
        got += part.length;
      }
      current.chunkDigest = 'sha256:' + chunk.digest('hex');
      this.entries.push(current);
      written += length;
      current = { name: header.name, type: 'chunk' };
    }
    // Padding stays in the last chunk's member, followed by the next entry's header.
    this.write(Buffer.alloc(padTo(header.size)));
    entry.digest = 'sha256:' + whole.digest('hex');
  }

  private tocEntry(h: TarHeader): TocEntry {
    const entry: TocEntry = {
      name: h.name,
      type: h.type,
      modtime: formatModtime(h.mtime),
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      userName: nameIfChanged(this.lastUserName, h.uid, h.uname),
      groupName: nameIfChanged(this.lastGroupName, h.gid, h.gname),
    };
    if (h.type === 'reg') entry.size = h.size;
    if (h.type === 'symlink' || h.type === 'hardlink') entry.linkName = h.linkName;
    if (h.type === 'char' || h.type === 'block') {
      entry.devMajor = h.devMajor;
      entry.devMinor = h.devMinor;
    }
    if (h.xattrs.size > 0) {
      entry.xattrs = Object.fromEntries([...h.xattrs].map(([k, v]) => [k, v.toString('base64')]));
    }
    return entry;
  }

  private write(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.member.push(bytes);
    this.memberLength += bytes.length;
  }

  /**
   * Starts compressing the member assembled so far as one complete gzip member, then emits
   * finished members in order while too many are in flight. Small members are compressed
   * at once on this thread (a thread-pool hop costs more than they do); larger ones on the
   * thread pool, several at a time, so a layer uses more than one core.
   */
  private async *closeMember(): AsyncGenerator<Buffer> {
    if (this.memberLength === 0) return;
    const data = this.member.length === 1 ? this.member[0]! : Buffer.concat(this.member, this.memberLength);
    this.member = [];
    this.memberLength = 0;
    this.headerRun = 0;
    this.diff.update(data);
    this.uncompressed += data.length;
    const gz = data.length < SYNC_GZIP_LIMIT ? Promise.resolve(gzipSync(data, { level: this.level })) : gzipAsync(data, { level: this.level });
    // Rejections are handled when the member reaches the head of the queue.
    gz.catch(() => undefined);
    this.inFlight.push({ gz, bytes: data.length, entries: this.startsNextMember });
    this.inFlightBytes += data.length;
    this.startsNextMember = [];
    yield* this.emitMembers(MAX_IN_FLIGHT_BYTES);
  }

  /** Emits compressed members in order until at most `keepBytes` of input are still in flight. */
  private async *emitMembers(keepBytes: number): AsyncGenerator<Buffer> {
    while (this.inFlight.length > 0 && (this.inFlightBytes > keepBytes || this.inFlight.length > MAX_IN_FLIGHT_MEMBERS)) {
      const member = this.inFlight.shift()!;
      this.inFlightBytes -= member.bytes;
      const gz = await member.gz;
      for (const entry of member.entries) entry.offset = this.compressed;
      this.compressed += gz.length;
      yield gz;
    }
  }
}

/** Header of a file we add ourselves, as Go's tar.Writer writes it for the reference. */
function syntheticHeader(name: string, size: number): TarHeader {
  return {
    raw: [ustarHeader(name, size)],
    globalRaw: [],
    name,
    type: 'reg',
    typeflag: '0',
    linkName: '',
    mode: 0,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    size,
    mtime: 0,
    devMajor: 0,
    devMinor: 0,
    xattrs: NO_XATTRS,
  };
}

/** RFC 3339 UTC, whole seconds; the epoch means "unknown" and is left out, as in the reference. */
function formatModtime(seconds: number): string | undefined {
  if (seconds === 0) return undefined;
  const ms = seconds * 1000;
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) return undefined;
  const iso = new Date(ms).toISOString();
  return /^\d{4}-/.test(iso) ? iso.replace(/\.\d{3}Z$/, 'Z') : undefined;
}

/** The reference writes a user/group name only when it differs from the last one seen for that id. */
function nameIfChanged(last: Map<number, string>, id: number, name: string): string | undefined {
  if (!name || last.get(id) === name) return undefined;
  last.set(id, name);
  return name;
}

/** Go's path.Clean("/" + name) without the leading slash: how readers key TOC entries. */
function cleanEntryName(name: string): string {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}
