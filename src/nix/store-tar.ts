/**
 * Tar streams of Nix store paths, and of the links layer (`/bin/x` → the store). Owner
 * root, the modes the store holds, one fixed mtime (the store's own, 1 s past the epoch),
 * names relative to `/`, entries in name order: the same store paths always give the
 * same layer bytes, whichever image they are part of.
 *
 * The bytes come out as 1 MiB blocks that file contents are read straight into, each a
 * fresh buffer handed on whole (the layer writer's gzip takes each as one member without
 * copying). Streaming every file through its own read stream and tar-stream's entry
 * stream cost about three times the CPU of the read itself (bench/nix), mostly in a
 * buffer per read; tar headers are node-tar's.
 */
import { lstat, open, readdir, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Header, type HeaderData } from 'tar/header';
import { Pax } from 'tar/pax';

const STORE_MTIME = new Date(1000);
/** Bytes per block handed on (the layer writer's gzip member size). */
export const TAR_BLOCK_BYTES = 1024 * 1024;
const RECORD = 512;

type Entry =
  | { type: 'directory'; name: string; mode: number }
  | { type: 'file'; name: string; mode: number; source: string; size: number }
  | { type: 'symlink'; name: string; linkname: string };

/** The directories above the store (`nix/`, `nix/store/`), then each path's tree. */
export function storePathsTar(storePaths: readonly string[]): Readable {
  return packEntries(async function* () {
    const storeDir = path.dirname(storePaths[0]!);
    const parts = storeDir.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) yield { type: 'directory', name: parts.slice(0, i).join('/') + '/', mode: 0o755 };
    for (const storePath of [...storePaths].sort()) yield* walk(storePath);
  });
}

async function* walk(absolute: string): AsyncGenerator<Entry> {
  const info = await lstat(absolute);
  const name = absolute.replace(/^\/+/, '');
  if (info.isSymbolicLink()) {
    yield { type: 'symlink', name, linkname: await readlink(absolute) };
  } else if (info.isDirectory()) {
    yield { type: 'directory', name: name + '/', mode: info.mode & 0o7777 };
    for (const child of (await readdir(absolute)).sort()) yield* walk(path.join(absolute, child));
  } else if (info.isFile()) {
    yield { type: 'file', name, mode: info.mode & 0o7777, source: absolute, size: info.size };
  }
  // The store holds nothing else (no devices, fifos or sockets).
}

/** Top-level directories of packages linked into `/`, entry by entry. */
const LINKED_DIRS = ['bin', 'sbin', 'etc', 'lib', 'share'];

/**
 * The links layer: for each package (in order; the first wins a name), each entry of its
 * bin, sbin, etc, lib and share directories as a symlink at the same place under `/`.
 */
export async function linksTar(packagePaths: readonly string[]): Promise<{ tar: Readable; links: Map<string, string> }> {
  const links = new Map<string, string>();
  const dirs = new Set<string>();
  for (const pkg of packagePaths) {
    for (const dir of LINKED_DIRS) {
      const entries = await readdir(path.join(pkg, dir)).catch(() => [] as string[]);
      for (const entry of entries.sort()) {
        const name = `${dir}/${entry}`;
        if (links.has(name)) continue;
        dirs.add(dir);
        links.set(name, path.join(pkg, dir, entry));
      }
    }
  }
  const names = [...links.keys()].sort();
  const tarStream = packEntries(async function* () {
    for (const dir of [...dirs].sort()) yield { type: 'directory', name: dir + '/', mode: 0o755 };
    for (const name of names) yield { type: 'symlink', name, linkname: links.get(name)! };
  });
  return { tar: tarStream, links };
}

/** True when `file` exists in the package (a CA bundle, …). */
export async function hasFile(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined))?.isFile() ?? false;
}

/** The tar of `entries` as a byte stream of whole blocks (the last one shorter). */
function packEntries(entries: () => AsyncGenerator<Entry>): Readable {
  // Not object mode: at most one block waits ahead of the reader.
  return Readable.from(tarBlocks(entries()), { objectMode: false, highWaterMark: TAR_BLOCK_BYTES });
}

/** Fills fixed-size blocks; a full one is taken with `take`, after which writing goes on in a new block. */
class BlockFiller {
  block = Buffer.allocUnsafe(TAR_BLOCK_BYTES);
  used = 0;
  private readonly full: Buffer[] = [];

  get room(): number {
    return this.block.length - this.used;
  }

  /** Copies `bytes` in (headers, padding). */
  put(bytes: Buffer): void {
    let offset = 0;
    while (offset < bytes.length) {
      const n = Math.min(this.room, bytes.length - offset);
      bytes.copy(this.block, this.used, offset, offset + n);
      offset += n;
      this.advance(n);
    }
  }

  /** Zeroes up to the next 512-byte boundary. */
  pad(): void {
    const rest = (RECORD - (this.used % RECORD)) % RECORD;
    this.block.fill(0, this.used, this.used + rest);
    this.advance(rest);
  }

  /** Counts `n` bytes written into `block` at `used` by someone else (a file read). */
  advance(n: number): void {
    this.used += n;
    if (this.used === this.block.length) {
      this.full.push(this.block);
      this.block = Buffer.allocUnsafe(TAR_BLOCK_BYTES);
      this.used = 0;
    }
  }

  /** The blocks filled since the last call. */
  take(): Buffer[] {
    return this.full.splice(0);
  }

  /** The last, partial block. */
  rest(): Buffer {
    return this.block.subarray(0, this.used);
  }
}

async function* tarBlocks(entries: AsyncIterable<Entry>): AsyncGenerator<Buffer> {
  const out = new BlockFiller();
  for await (const entry of entries) {
    out.put(headerOf(entry));
    yield* out.take();
    if (entry.type !== 'file') continue;
    const handle = await open(entry.source, 'r');
    try {
      let position = 0;
      while (position < entry.size) {
        const { bytesRead } = await handle.read(out.block, out.used, Math.min(out.room, entry.size - position), position);
        // Store paths never change; a file that shrank since it was listed would misalign the tar.
        if (bytesRead === 0) throw new Error(`${entry.source} ended at ${position} of ${entry.size} bytes while it was being packed`);
        position += bytesRead;
        out.advance(bytesRead);
        yield* out.take();
      }
    } finally {
      await handle.close();
    }
    out.pad();
    yield* out.take();
  }
  // The end of an archive: two zero records.
  out.put(Buffer.alloc(2 * RECORD));
  yield* out.take();
  if (out.used > 0) yield out.rest();
}

/** The header record(s) of an entry: a PAX header first where ustar cannot hold a name. */
function headerOf(entry: Entry): Buffer {
  const data: HeaderData = {
    path: entry.name,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    mtime: STORE_MTIME,
    ...(entry.type === 'file'
      ? { type: 'File', mode: entry.mode, size: entry.size }
      : entry.type === 'symlink'
        ? { type: 'SymbolicLink', mode: 0o777, size: 0, linkpath: entry.linkname }
        : { type: 'Directory', mode: entry.mode, size: 0 }),
  };
  const header = new Header(data);
  const record = Buffer.alloc(RECORD);
  header.encode(record);
  if (!header.needPax) return record;
  return Buffer.concat([new Pax({ path: data.path, linkpath: data.linkpath, size: data.size, mtime: STORE_MTIME }).encode(), record]);
}
