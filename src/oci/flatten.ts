/**
 * Flattening: N layer tars in, one tar out that holds exactly the filesystem the layers
 * make when applied bottom first (image-format spec §6-8 and §10).
 *
 * How: one pass over the layers, two read at a time (decompression is most of the read
 * cost, and it runs on the thread pool). Each regular file's bytes are appended to a
 * per-layer spool file on disk, and each entry's metadata is replayed, strictly in layer
 * order, into an in-memory tree (`FlattenTree`: metadata only). When every layer is
 * applied, the tree is written out sorted by path, file bytes read back from the spool.
 *
 * Why spool rather than re-read the layers: the output must be sorted (reproducible
 * layers, hardlink targets before their links) while layer contents arrive in layer
 * order, and a layer is usually a remote blob that is expensive to fetch and decompress
 * twice. Why one spool file per layer rather than one per entry: appending is one
 * sequential write per layer, where a file per entry costs an open/close for each of the
 * tens of thousands of small files a base image has.
 *
 * Memory: the tree (a few hundred bytes per path of the final filesystem plus the
 *   entries of the layers replayed into it), the headers of the layer read ahead, and a
 *   chunk or two of file data in flight.
 *   No file's contents are ever held whole.
 * Disk: up to the total size of all regular-file payloads of all layers (≈ the sum of the
 *   layers' uncompressed sizes). A layer's spool file is deleted as soon as nothing it
 *   holds is still in the tree (everything in it was deleted or overwritten by later
 *   layers), and the whole spool directory when the output stream ends, fails or is
 *   destroyed.
 */
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { TarFormatError, TarReader, type TarHeader } from './estargz-tar.js';
import { FlattenTree, FlattenError, isWhiteoutName, type TreeEntry } from './flatten-tree.js';
import { ownedPrefix } from '../util/leftovers.js';
import { SPOOL_PREFIX } from './flatten-spools.js';
import { BudgetExceeded, type ContentBudget } from './content-budget.js';
import { END_OF_ARCHIVE, encodeHeader, paddingFor, type OutputHeader } from './flatten-tar-writer.js';

export { FlattenError } from './flatten-tree.js';

/** Opens one layer's *uncompressed* tar. Called once per layer, in order, at most two open at once. */
export type LayerOpener = () => Promise<Readable>;

export interface FlattenOptions {
  /** Where the spool directory is made (default `os.tmpdir()`). */
  tmpDir?: string;
  /** Counts every entry read (and fails the flatten past its limit) before anything is kept for it. */
  budget?: ContentBudget;
}

/** A spooled payload: which layer's spool file and where in it. */
interface SpoolRef {
  layer: number;
  offset: number;
}

const CHUNK = 1 << 20;

/**
 * Returns the flattened layer as an uncompressed tar stream, at once; the work starts
 * when the stream is first read. All layers are read before the first output byte
 * (sorted output needs the whole tree). Errors (an unreadable layer, a broken tar, a
 * `FlattenError` for an entry that cannot be applied) are emitted as the stream's
 * error; destroying the stream stops reading the current layer and removes the spool.
 */
export function flattenLayers(layers: LayerOpener[], options: FlattenOptions = {}): Readable {
  const abort = new AbortController();
  const out = Readable.from(generate(layers, options, abort.signal), { objectMode: false, highWaterMark: CHUNK });
  // Readable.from only reaches a generator at its next yield, and the whole read phase
  // comes before the first yield: tell it directly so it stops reading layers.
  const destroy = out._destroy.bind(out);
  out._destroy = (err, callback) => {
    abort.abort();
    destroy(err, callback);
  };
  return out;
}

/** Layers read at once: while one layer's entries are applied, the next is already decompressing. */
const READ_AHEAD = 2;
/**
 * Headers a layer may read ahead of the tree. Past this the reader waits for the tree to
 * catch up, so memory for pending headers stays flat however many entries a layer has.
 */
const MAX_PENDING_ENTRIES = 8192;

async function* generate(layers: LayerOpener[], options: FlattenOptions, signal: AbortSignal): AsyncGenerator<Buffer> {
  const spool = await Spool.create(options.tmpDir ?? tmpdir());
  // Stops the read-ahead when we fail or are destroyed.
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const reads: LayerEntries[] = [];
  const startRead = (i: number) => {
    if (i >= layers.length) return;
    reads[i] = new LayerEntries(stop.signal);
    reads[i]!.fill(spoolLayer(i, layers[i]!, spool, reads[i]!, options.budget, stop.signal));
  };
  try {
    for (let i = 0; i < READ_AHEAD; i++) startRead(i);
    const tree = new FlattenTree<SpoolRef>({
      adopt: (ref) => spool.adopt(ref.layer),
      release: (ref) => spool.release(ref.layer),
    });
    for (let i = 0; i < layers.length; i++) {
      tree.beginLayer(i);
      for await (const { header, content } of reads[i]!.drain()) tree.apply(header, content);
      signal.throwIfAborted();
      startRead(i + READ_AHEAD);
      await spool.finishLayer(i);
    }
    yield* emit(tree.entries(), spool, signal);
  } finally {
    signal.removeEventListener('abort', onAbort);
    stop.abort(new Error('flatten: finished'));
    await Promise.allSettled(reads.map((read) => read.finished));
    await spool.dispose();
  }
}

/** A tar entry read and spooled, waiting for its turn to be applied to the tree. */
interface SpooledEntry {
  header: TarHeader;
  content?: SpoolRef;
}

/**
 * One layer's entries between its reader and the tree: a bounded queue. The reader waits
 * while it is full; the tree takes entries in order and learns how the read ended.
 */
class LayerEntries {
  private readonly queue: SpooledEntry[] = [];
  private ended = false;
  private failure: unknown;
  private wakeReader?: () => void;
  private wakeTree?: () => void;
  finished: Promise<void> = Promise.resolve();

  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener('abort', () => this.wake(), { once: true });
  }

  fill(read: Promise<void>): void {
    this.finished = read.then(
      () => this.end(undefined),
      (err: unknown) => this.end(err ?? new Error('flatten: layer read failed')),
    );
  }

  async push(entry: SpooledEntry): Promise<void> {
    this.queue.push(entry);
    this.wakeTree?.();
    while (this.queue.length >= MAX_PENDING_ENTRIES && !this.signal.aborted) {
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
    }
    this.signal.throwIfAborted();
  }

  async *drain(): AsyncGenerator<SpooledEntry> {
    for (;;) {
      // Taken in batches: one wake-up per batch, not per entry.
      const batch = this.queue.splice(0, this.queue.length);
      this.wakeReader?.();
      yield* batch;
      if (batch.length > 0) continue;
      if (this.ended) {
        if (this.failure !== undefined) throw this.failure;
        return;
      }
      this.signal.throwIfAborted();
      await new Promise<void>((resolve) => (this.wakeTree = resolve));
    }
  }

  private end(failure: unknown): void {
    this.ended = true;
    this.failure = failure;
    this.wake();
  }

  private wake(): void {
    this.wakeReader?.();
    this.wakeTree?.();
  }
}

/** Reads one layer to the end: payloads into its spool file, headers (without their raw blocks) into the queue. */
async function spoolLayer(
  index: number,
  openLayer: LayerOpener,
  spool: Spool,
  out: LayerEntries,
  budget: ContentBudget | undefined,
  signal: AbortSignal,
): Promise<void> {
  const stream = await openLayer();
  if (signal.aborted) {
    // Stopped while the layer was being opened: nobody else will close it.
    stream.destroy();
    signal.throwIfAborted();
  }
  const onAbort = () => stream.destroy(new Error('flatten: output stream destroyed'));
  signal.addEventListener('abort', onAbort, { once: true });
  const reader = new TarReader(stream);
  try {
    for (;;) {
      const header = await reader.next();
      if (!header) break;
      signal.throwIfAborted();
      budget?.countEntry();
      let content: SpoolRef | undefined;
      // Whiteout markers never become files, so their (normally empty) payload is skipped.
      if (header.type === 'reg' && header.size > 0 && !isWhiteoutName(header.name)) {
        content = await spool.append(index, reader, header.size);
      }
      // The raw blocks are half a kilobyte per entry and only the estargz writer needs them.
      await out.push({ header: { ...header, raw: NO_BLOCKS, globalRaw: NO_BLOCKS }, content });
    }
  } catch (err) {
    await reader.close().catch(() => {});
    stream.destroy();
    if (signal.aborted || err instanceof BudgetExceeded) throw err;
    throw new Error(`flatten: reading layer ${index}: ${(err as Error).message}`, { cause: err });
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

const NO_BLOCKS: Buffer[] = [];

/**
 * Writes the tree as one tar. The first name of a hardlink group in sort order carries
 * the inode (content, metadata); every later name is a hardlink to it, so a link's
 * target always comes first, and a group whose original target was deleted upstream
 * still shares the old content.
 */
async function* emit(entries: TreeEntry<SpoolRef>[], spool: Spool, signal: AbortSignal): AsyncGenerator<Buffer> {
  const emittedAs = new Map<object, string>();
  for (const { path: name, node } of entries) {
    signal.throwIfAborted();
    if (node.kind === 'dir') {
      // The root has an entry only when a layer gave it attributes.
      if (name === '' && node.attrsLayer < 0) continue;
      yield encodeHeader({ ...node.attrs, path: name, type: 'dir', size: 0, linkName: '', devMajor: 0, devMinor: 0 });
      continue;
    }
    const inode = node.inode;
    const base: Omit<OutputHeader, 'type' | 'size' | 'linkName'> = {
      ...inode.attrs,
      path: name,
      devMajor: inode.devMajor,
      devMinor: inode.devMinor,
    };
    const first = emittedAs.get(inode);
    if (first !== undefined) {
      yield encodeHeader({ ...base, type: 'hardlink', size: 0, linkName: first, devMajor: 0, devMinor: 0 });
      continue;
    }
    if (inode.links > 1) emittedAs.set(inode, name);
    yield encodeHeader({ ...base, type: inode.type, size: inode.size, linkName: inode.linkTarget });
    if (inode.type === 'reg' && inode.size > 0) {
      if (!inode.content) throw new Error(`flatten: no spooled content for ${name}`);
      yield* spool.read(inode.content, inode.size);
      yield paddingFor(inode.size);
    }
  }
  yield END_OF_ARCHIVE;
}

interface SpoolFile {
  path: string;
  handle: FileHandle;
  /** Bytes appended so far. */
  size: number;
  /** Inodes in the tree whose content is in this file. */
  live: number;
}



/** Per-layer append-only files of regular-file payloads, in a private temp directory. */
class Spool {
  private readonly files = new Map<number, SpoolFile>();

  private constructor(private readonly dir: string) {}

  static async create(base: string): Promise<Spool> {
    return new Spool(await mkdtemp(path.join(base, ownedPrefix(SPOOL_PREFIX))));
  }

  /** Copies the current entry's payload from the tar into the layer's spool file. */
  async append(layer: number, reader: TarReader, size: number): Promise<SpoolRef> {
    let file = this.files.get(layer);
    if (!file) {
      const filePath = path.join(this.dir, `layer-${layer}`);
      file = { path: filePath, handle: await open(filePath, 'w+'), size: 0, live: 0 };
      this.files.set(layer, file);
    }
    const ref = { layer, offset: file.size };
    let copied = 0;
    for (;;) {
      const chunk = await reader.readPayload(CHUNK);
      if (!chunk) break;
      await writeFully(file.handle, chunk, file.size);
      file.size += chunk.length;
      copied += chunk.length;
    }
    if (copied !== size) throw new TarFormatError(`payload of ${copied} bytes where the header said ${size}`);
    return ref;
  }

  adopt(layer: number): void {
    this.files.get(layer)!.live++;
  }

  release(layer: number): void {
    this.files.get(layer)!.live--;
  }

  /**
   * Deletes spool files of layers up to `applied` that nothing in the tree needs any more.
   * Only at layer boundaries: the layer being applied may still add names for content it
   * spooled, and later layers are still being read.
   */
  async finishLayer(applied: number): Promise<void> {
    for (const [layer, file] of this.files) {
      if (layer > applied || file.live > 0) continue;
      this.files.delete(layer);
      await file.handle.close();
      await rm(file.path, { force: true });
    }
  }

  async *read(ref: SpoolRef, size: number): AsyncGenerator<Buffer> {
    const file = this.files.get(ref.layer);
    if (!file) throw new Error(`flatten: spool of layer ${ref.layer} is gone`);
    let position = ref.offset;
    let left = size;
    while (left > 0) {
      // A fresh buffer each time: the consumer may hold on to what was yielded.
      const buffer = Buffer.allocUnsafe(Math.min(left, CHUNK));
      const { bytesRead } = await file.handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) throw new Error(`flatten: spool of layer ${ref.layer} is truncated`);
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      position += bytesRead;
      left -= bytesRead;
    }
  }

  async dispose(): Promise<void> {
    for (const file of this.files.values()) await file.handle.close().catch(() => {});
    this.files.clear();
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function writeFully(handle: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}
