import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test, type TestContext } from 'node:test';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { estargzVerifier, type EstargzVerifier } from '../../test/support/estargz-verify.js';
import { exec, umociUnpack } from '../../test/support/tools.js';
import { ContentStore } from '../content/store.js';
import { FsBackend } from '../storage/fs.js';
import { sha256Digest } from './digest.js';
import { DEFAULT_CHUNK_SIZE, TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION, writeEstargzLayer, type WrittenEstargzLayer } from './estargz.js';
import { FOOTER_SIZE, NO_PREFETCH_LANDMARK, TOC_TAR_NAME, footerBytes, readToc, type TocEntry } from './estargz-toc.js';
import { MediaType } from './mediatypes.js';
import type { ImageConfig, ImageIndex, ImageManifest } from './types.js';

/** What tar-stream's pack.entry() takes. */
type EntryHeader = Partial<tar.Header> & { name: string };

const KiB = 1024;
const CHUNK = 64 * KiB;
const MTIME = new Date('2024-05-06T07:08:09Z');

interface InputEntry {
  header: EntryHeader;
  data?: Buffer;
}

const big = randomBytes(200 * KiB + 123); // 3 full chunks and a short one
const exact = randomBytes(2 * CHUNK); // chunks that end exactly at the end of the file
const deepName = 'usr/share/' + 'long-directory-name/'.repeat(12) + 'file'; // longer than ustar allows: a PAX path

/** One of everything a layer holds: dirs, small/empty/large files, links, an xattr, a fifo, a device. */
const ENTRIES: InputEntry[] = [
  { header: { name: 'etc/', type: 'directory', mode: 0o755 } },
  { header: { name: 'etc/hostname', mode: 0o644, uid: 1000, gid: 1000, uname: 'kontain', gname: 'staff' }, data: Buffer.from('kontain\n') },
  { header: { name: 'etc/empty', mode: 0o600 }, data: Buffer.alloc(0) },
  { header: { name: 'etc/xattr', mode: 0o644, pax: { 'SCHILY.xattr.user.kontain': 'yes' } }, data: Buffer.from('has an xattr\n') },
  { header: { name: 'usr/', type: 'directory', mode: 0o755 } },
  { header: { name: 'usr/bin/', type: 'directory', mode: 0o755 } },
  { header: { name: 'usr/bin/big', mode: 0o755 }, data: big },
  { header: { name: 'usr/bin/exact', mode: 0o755 }, data: exact },
  { header: { name: 'usr/bin/tool', type: 'symlink', linkname: 'big', mode: 0o777 } },
  { header: { name: 'usr/bin/tool-hard', type: 'link', linkname: 'usr/bin/big', mode: 0o755 } },
  { header: { name: deepName, mode: 0o644 }, data: Buffer.from('deep\n') },
  { header: { name: 'run/fifo', type: 'fifo', mode: 0o644 } },
  { header: { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 } },
];

async function makeTar(entries: InputEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise((resolve, reject) => {
    pack.on('end', () => resolve(undefined));
    pack.on('error', (err: unknown) => reject(err));
  });
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    const header = { mtime: MTIME, ...e.header, size: e.header.type && e.header.type !== 'file' ? 0 : data.length };
    await new Promise<void>((resolve, reject) => pack.entry(header, data, (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function listTar(bytes: Buffer): Promise<{ header: EntryHeader; data: Buffer }[]> {
  const extract = tar.extract();
  const out: { header: EntryHeader; data: Buffer }[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      out.push({ header: entry.header, data: Buffer.concat(chunks) });
    }
  })();
  extract.end(bytes);
  await done;
  return out;
}

const sha256 = (data: Buffer): string => 'sha256:' + createHash('sha256').update(data).digest('hex');

let work: string;
let store: ContentStore;
let input: Buffer;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-estargz-'));
  store = new ContentStore(new FsBackend(path.join(work, 'store')));
  input = await makeTar(ENTRIES);
});
after(async () => {
  await rm(work, { recursive: true, force: true, maxRetries: 3 });
});

interface Written {
  layer: WrittenEstargzLayer;
  blob: Buffer;
  blobPath: string;
}

/** Writes `tarBytes` as eStargz, optionally fed in small pieces, and reads the blob back. */
async function write(tarBytes: Buffer, options: { chunkSize?: number; gzipLevel?: number } = { chunkSize: CHUNK }, pieces = 0): Promise<Written> {
  const parts: Buffer[] = [];
  if (pieces > 0) for (let i = 0; i < tarBytes.length; i += pieces) parts.push(tarBytes.subarray(i, i + pieces));
  else parts.push(tarBytes);
  const layer = await writeEstargzLayer(store, Readable.from(parts), options);
  const blobPath = path.join(work, 'store', ContentStore.blobName(layer.digest));
  return { layer, blob: await readFile(blobPath), blobPath };
}

let written: Written | undefined;
/** The main case (64 KiB chunks), written once and shared by the checks below. */
async function main(): Promise<Written> {
  written ??= await write(input);
  return written;
}

async function goVerifier(t: TestContext): Promise<EstargzVerifier | undefined> {
  const verifier = await estargzVerifier();
  if (typeof verifier === 'string') {
    t.skip(verifier);
    return undefined;
  }
  return verifier;
}

const cleanName = (name: string): string => name.replace(/^\.?\//, '').replace(/\/$/, '');

describe('writeEstargzLayer', () => {
  test('the reference reader (stargz-snapshotter) accepts the blob and verifies every chunk', async (t) => {
    const verifier = await goVerifier(t);
    if (!verifier) return;
    const { layer, blobPath } = await main();
    const summary = await verifier.verify(blobPath, layer.annotations[TOC_DIGEST_ANNOTATION]!);
    assert.equal(summary.tocDigest, layer.tocDigest);

    const expected = new Set([NO_PREFETCH_LANDMARK, ...ENTRIES.map((e) => cleanName(e.header.name))]);
    for (const implied of ['run', 'dev', 'usr/share']) expected.add(implied);
    for (let dir = path.posix.dirname(deepName); dir !== 'usr/share'; dir = path.posix.dirname(dir)) expected.add(dir);
    assert.deepEqual(new Set(summary.files.map((f) => f.name)), expected);

    const byName = new Map(summary.files.map((f) => [f.name, f]));
    assert.deepEqual(byName.get('usr/bin/big'), {
      name: 'usr/bin/big', type: 'reg', size: big.length, mode: 0o755, digest: sha256(big), chunks: 4,
    });
    assert.equal(byName.get('usr/bin/exact')!.chunks, 2);
    assert.equal(byName.get('usr/bin/tool-hard')!.digest, sha256(big), 'hardlink resolves to its target');
    assert.equal(byName.get('usr/bin/tool')!.linkName, 'big');
    assert.equal(byName.get('etc/empty')!.size, 0);
    assert.equal(byName.get(NO_PREFETCH_LANDMARK)!.digest, sha256(Buffer.from([0x0f])));
  });

  test('gunzip gives one tar: the landmark, the input entries unchanged, then the TOC', async () => {
    const { blob, layer } = await main();
    const entries = await listTar(gunzipSync(blob));
    assert.equal(entries[0]!.header.name, NO_PREFETCH_LANDMARK);
    assert.deepEqual(entries[0]!.data, Buffer.from([0x0f]));
    const toc = entries.at(-1)!;
    assert.equal(toc.header.name, TOC_TAR_NAME);
    assert.equal(sha256(toc.data), layer.tocDigest, 'toc.digest is the sha256 of the JSON bytes in the tar');

    const original = await listTar(input);
    const middle = entries.slice(1, -1);
    assert.equal(middle.length, original.length);
    const header = (h: EntryHeader) => ({ ...h, byteOffset: undefined }); // where it sits in the stream differs
    middle.forEach((got, i) => {
      assert.deepEqual(header(got.header), header(original[i]!.header), got.header.name);
      assert.ok(got.data.equals(original[i]!.data), `${got.header.name} content`);
    });
  });

  test('digest, size, diffID and annotations describe the stored blob', async () => {
    const { blob, layer } = await main();
    const tarStream = gunzipSync(blob);
    assert.equal(layer.digest, sha256(blob));
    assert.equal(layer.size, blob.length);
    assert.equal(layer.diffID, sha256(tarStream));
    assert.equal(layer.uncompressedSize, tarStream.length);
    assert.deepEqual(layer.annotations, {
      [TOC_DIGEST_ANNOTATION]: layer.tocDigest,
      [UNCOMPRESSED_SIZE_ANNOTATION]: String(tarStream.length),
    });
    assert.equal(tarStream.length % 512, 0);
    assert.ok(tarStream.subarray(-1024).every((b) => b === 0), 'ends with the tar end blocks');
  });

  test('TOC: every entry in order, chunks at gzip member starts, digests, attributes', async () => {
    const { blob, layer } = await main();
    const { toc, tocOffset, footerSize } = readToc(blob);
    assert.equal(footerSize, FOOTER_SIZE);
    assert.deepEqual(blob.subarray(-FOOTER_SIZE), footerBytes(tocOffset));
    // The TOC member: header, JSON, padding, and the end blocks of the whole stream.
    const tocMember = gunzipSync(blob.subarray(tocOffset, -FOOTER_SIZE));
    const tocJSON = readToc(blob).tocJSON;
    assert.equal(tocMember.length, 512 + Math.ceil(tocJSON.length / 512) * 512 + 1024);
    assert.ok(tocMember.subarray(512, 512 + tocJSON.length).equals(tocJSON));
    assert.equal(layer.tocDigest, sha256(tocJSON));

    const names = toc.entries.filter((e) => e.type !== 'chunk').map((e) => e.name);
    assert.deepEqual(names, [NO_PREFETCH_LANDMARK, ...ENTRIES.map((e) => e.header.name)]);
    const byName = (name: string): TocEntry[] => toc.entries.filter((e) => e.name === name);

    // Where each member starts, so a chunk can be gunzipped on its own from its offset.
    const offsets = [...toc.entries.map((e) => e.offset ?? 0).filter((o) => o > 0), tocOffset];
    assert.deepEqual(offsets, [...new Set(offsets)].sort((a, b) => a - b), 'offsets unique and increasing');
    const chunkBytes = (e: TocEntry, length: number): Buffer => {
      assert.deepEqual([...blob.subarray(e.offset!, e.offset! + 3)], [0x1f, 0x8b, 0x08], `${e.name}@${e.chunkOffset ?? 0} starts a gzip member`);
      const next = offsets[offsets.indexOf(e.offset!) + 1]!;
      return gunzipSync(blob.subarray(e.offset!, next)).subarray(0, length);
    };

    const bigEntries = byName('usr/bin/big');
    assert.deepEqual(
      bigEntries.map((e) => [e.type, e.chunkOffset ?? 0, e.chunkSize ?? 0]),
      [['reg', 0, CHUNK], ['chunk', CHUNK, CHUNK], ['chunk', 2 * CHUNK, CHUNK], ['chunk', 3 * CHUNK, 0]],
      'chunkSize is left out on the short last chunk',
    );
    assert.equal(bigEntries[0]!.size, big.length);
    assert.equal(bigEntries[0]!.digest, sha256(big));
    assert.equal(bigEntries[0]!.mode, 0o755);
    assert.equal(bigEntries[0]!.modtime, '2024-05-06T07:08:09Z');
    for (const e of bigEntries) {
      const start = e.chunkOffset ?? 0;
      const expected = big.subarray(start, start + (e.chunkSize || big.length - start));
      assert.equal(e.chunkDigest, sha256(expected));
      assert.ok(chunkBytes(e, expected.length).equals(expected), `chunk at ${start}`);
      if (e.type === 'chunk') {
        const keys = ['chunkDigest', 'chunkOffset', 'name', 'offset', 'type', ...(e.chunkSize ? ['chunkSize'] : [])];
        assert.deepEqual(Object.keys(e).sort(), keys.sort(), 'a chunk entry carries only where it is and its digest');
      }
    }
    // The reference writer keeps chunkSize on a last chunk that is exactly full.
    assert.deepEqual(byName('usr/bin/exact').map((e) => e.chunkSize), [CHUNK, CHUNK]);

    const hostname = byName('etc/hostname')[0]!;
    assert.deepEqual([hostname.uid, hostname.gid, hostname.userName, hostname.groupName], [1000, 1000, 'kontain', 'staff']);
    assert.ok(chunkBytes(hostname, 8).equals(Buffer.from('kontain\n')));
    const empty = byName('etc/empty')[0]!;
    assert.deepEqual([empty.size, empty.offset, empty.chunkDigest, empty.digest], [undefined, undefined, undefined, sha256(Buffer.alloc(0))]);
    assert.deepEqual(byName('etc/xattr')[0]!.xattrs, { 'user.kontain': Buffer.from('yes').toString('base64') });
    assert.equal(byName('usr/bin/tool')[0]!.linkName, 'big');
    assert.deepEqual([byName('usr/bin/tool-hard')[0]!.type, byName('usr/bin/tool-hard')[0]!.linkName], ['hardlink', 'usr/bin/big']);
    assert.deepEqual([byName('dev/null')[0]!.type, byName('dev/null')[0]!.devMajor, byName('dev/null')[0]!.devMinor], ['char', 1, 3]);
    assert.equal(byName('run/fifo')[0]!.type, 'fifo');
    assert.equal(byName('etc/')[0]!.type, 'dir');
    // As the reference's Build writes it: mode, owner and time all zero, so left out.
    const landmark = toc.entries[0]!;
    assert.ok(landmark.offset! > 0);
    assert.deepEqual(landmark, {
      name: NO_PREFETCH_LANDMARK, type: 'reg', size: 1, offset: landmark.offset,
      digest: sha256(Buffer.from([0x0f])), chunkDigest: sha256(Buffer.from([0x0f])),
    });
  });

  test('matches the reference writer: same decompressed bytes up to the TOC, same TOC but offsets', async (t) => {
    const verifier = await goVerifier(t);
    if (!verifier) return;
    const { blob } = await main();
    const tarPath = path.join(work, 'input.tar');
    const refPath = path.join(work, 'reference.blob');
    await writeFile(tarPath, input);
    const ref = await verifier.reference(CHUNK, tarPath, refPath);
    const refBlob = await readFile(refPath);
    const ours = gunzipSync(blob);
    const theirs = gunzipSync(refBlob);
    assert.equal(ref.diffID, sha256(theirs));
    // Where the TOC entry's header starts: before its JSON, padding and the end blocks.
    const tocAt = (stream: Buffer, blob: Buffer): number => stream.length - 1024 - 512 - Math.ceil(readToc(blob).tocJSON.length / 512) * 512;
    const entriesOf = (stream: Buffer, blob: Buffer): Buffer => stream.subarray(0, tocAt(stream, blob));
    assert.ok(entriesOf(ours, blob).equals(entriesOf(theirs, refBlob)), 'entries byte for byte');
    assert.equal(ours.subarray(tocAt(ours, blob), tocAt(ours, blob) + 100).toString('latin1').replace(/\0+$/, ''), TOC_TAR_NAME);
    const withoutOffsets = (b: Buffer) => readToc(b).toc.entries.map(({ offset: _, ...rest }) => rest);
    assert.deepEqual(withoutOffsets(blob), withoutOffsets(refBlob));
  });

  test('default 4 MiB chunks on a file of 9 MiB', async (t) => {
    const huge = randomBytes(2 * DEFAULT_CHUNK_SIZE + KiB * KiB + 5);
    const { layer, blob, blobPath } = await write(await makeTar([{ header: { name: 'huge.bin', mode: 0o644 }, data: huge }]), {});
    const { toc } = readToc(blob);
    assert.deepEqual(
      toc.entries.filter((e) => e.name === 'huge.bin').map((e) => [e.chunkOffset ?? 0, e.chunkSize ?? 0]),
      [[0, DEFAULT_CHUNK_SIZE], [DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE], [2 * DEFAULT_CHUNK_SIZE, 0]],
    );
    const verifier = await goVerifier(t);
    if (!verifier) return;
    const summary = await verifier.verify(blobPath, layer.tocDigest);
    assert.deepEqual(summary.files.find((f) => f.name === 'huge.bin'), {
      name: 'huge.bin', type: 'reg', size: huge.length, mode: 0o644, digest: sha256(huge), chunks: 3,
    });
  });

  test('the reference reader rejects a flipped payload byte, a damaged TOC and a wrong TOC digest', async (t) => {
    const verifier = await goVerifier(t);
    if (!verifier) return;
    const { blob, layer } = await main();
    const { toc, tocOffset } = readToc(blob);
    const second = toc.entries.find((e) => e.name === 'usr/bin/big' && e.chunkOffset === CHUNK)!;
    const corrupt = async (name: string, at: number): Promise<string> => {
      const bad = Buffer.from(blob);
      bad[at] ^= 0x01;
      const file = path.join(work, name);
      await writeFile(file, bad);
      return file;
    };
    // 1 KiB into the member: deflate data of the chunk's payload, past the gzip header.
    // Inside the deflate data of big's second chunk: the chunk digest check catches it.
    await assert.rejects(
      verifier.verify(await corrupt('payload.blob', second.offset! + KiB), layer.tocDigest),
      new RegExp(`usr/bin/big: chunk at ${CHUNK} \\(member at ${second.offset}\\) does not match`),
    );
    await assert.rejects(verifier.verify(await corrupt('toc.blob', tocOffset + 40), layer.tocDigest), /open: .*TOC gzip stream/s);
    // A hex digit of the TOC offset in the footer: flipping its low bit either gives another
    // digit (the TOC is looked for in the wrong place) or a non-digit (the footer is refused).
    await assert.rejects(
      verifier.verify(await corrupt('footer.blob', blob.length - 20), layer.tocDigest),
      /open: .*TOC gzip header|footer: .*failed to parse toc offset/s,
    );
    await assert.rejects(verifier.verify((await main()).blobPath, sha256Digest('not the TOC')), /invalid TOC JSON/);
  });

  test('umoci unpacks the layer from an OCI layout to the same tree', async (t) => {
    try {
      await exec('umoci', ['--version']);
    } catch {
      t.skip('umoci is not installed (test/setup.sh installs it)');
      return;
    }
    const { blob, layer } = await main();
    const layout = path.join(work, 'layout');
    await writeLayout(layout, 'estargz', blob, layer);
    const bundle = path.join(work, 'bundle');
    await umociUnpack(`${layout}:estargz`, bundle);
    const rootfs = path.join(bundle, 'rootfs');

    const tree = await walk(rootfs);
    const expected = new Map<string, string>();
    const tocJSON = readToc(blob).tocJSON;
    expected.set(NO_PREFETCH_LANDMARK, `file ${sha256(Buffer.from([0x0f]))}`); // plain clients see these two (spec §8.5)
    expected.set(TOC_TAR_NAME, `file ${sha256(tocJSON)}`);
    for (const e of ENTRIES) {
      const name = cleanName(e.header.name);
      const mode = (e.header.mode ?? 0).toString(8);
      for (let dir = path.posix.dirname(name); dir !== '.'; dir = path.posix.dirname(dir)) if (!expected.has(dir)) expected.set(dir, 'dir');
      switch (e.header.type) {
        case 'directory': expected.set(name, `dir ${mode}`); break;
        case 'symlink': expected.set(name, `symlink ${e.header.linkname}`); break;
        case 'link': expected.set(name, `file ${mode} ${sha256(big)} link`); break;
        case 'fifo': expected.set(name, `fifo ${mode}`); break;
        // umoci --rootless cannot mknod, and leaves an empty file in the device's place.
        case 'character-device': expected.set(name, `file ${mode} ${sha256(Buffer.alloc(0))}`); break;
        default: expected.set(name, `file ${mode} ${sha256(e.data!)}${name === 'usr/bin/big' ? ' link' : ''}`);
      }
    }
    for (const [name, kind] of expected) {
      const got = tree.get(name);
      if (kind === 'dir') assert.match(got ?? '', /^dir /, name);
      else if (name === NO_PREFETCH_LANDMARK || name === TOC_TAR_NAME) assert.equal(got?.replace(/^file \d+ /, 'file '), kind, name);
      else assert.equal(got, kind, name);
    }
    assert.deepEqual([...tree.keys()].filter((n) => !expected.has(n)), [], 'nothing else in the rootfs');
    assert.equal((await lstat(path.join(rootfs, 'usr/bin/big'))).mtime.toISOString(), MTIME.toISOString());
  });

  test('thousands of header-only entries in a row (split across members) stay readable', async (t) => {
    const dirs: InputEntry[] = Array.from({ length: 3000 }, (_, i) => ({ header: { name: `d/${i}/`, type: 'directory', mode: 0o755 } }));
    const tail = { header: { name: 'd/last', mode: 0o644 }, data: Buffer.from('after the directories\n') };
    const many = await write(await makeTar([...dirs, tail]));
    const entries = await listTar(gunzipSync(many.blob));
    assert.equal(entries.length, 1 + 3001 + 1);
    assert.equal(entries.at(-2)!.data.toString(), 'after the directories\n');
    const verifier = await goVerifier(t);
    if (!verifier) return;
    const summary = await verifier.verify(many.blobPath, many.layer.tocDigest);
    assert.equal(summary.files.filter((f) => f.type === 'dir').length, 3001);
  });

  test('rewriting an eStargz layer drops its old TOC and landmark, and gives the same blob', async () => {
    const first = await main();
    const again = await write(gunzipSync(first.blob));
    assert.equal(again.layer.digest, first.layer.digest);
    assert.equal(again.layer.tocDigest, first.layer.tocDigest);
  });

  test('the blob does not depend on how the input stream is cut', async () => {
    const first = await main();
    const pieces = await write(input, { chunkSize: CHUNK }, 333);
    assert.equal(pieces.layer.digest, first.layer.digest);
  });

  test('gzip level 0 stores: a bigger blob with the same entries, still valid', async (t) => {
    const first = await main();
    const level0 = await write(input, { chunkSize: CHUNK, gzipLevel: 0 });
    assert.ok(level0.layer.size > input.length, 'stored, not deflated');
    const withoutOffsets = (b: Buffer) => readToc(b).toc.entries.map(({ offset: _, ...rest }) => rest);
    assert.deepEqual(withoutOffsets(level0.blob), withoutOffsets(first.blob));
    const verifier = await goVerifier(t);
    if (!verifier) return;
    await verifier.verify(level0.blobPath, level0.layer.tocDigest);
  });

  test('a truncated, non-tar or failing input, or bad options, reject and store no blob', async () => {
    const before = await blobCount();
    // The input goes wrong only once the store is writing: ContentStore.putBlob cannot yet
    // take a body that fails before the backend attaches to it (an uncaught 'error' on its
    // DigestingStream; writeGzipLayer has the same exposure), which is not what this tests.
    const late = (bytes: Buffer, error?: Error) =>
      Readable.from((async function* () {
        await new Promise((resolve) => setTimeout(resolve, 100));
        yield bytes;
        if (error) throw error;
      })());
    await assert.rejects(writeEstargzLayer(store, late(input.subarray(0, 3000)), { chunkSize: CHUNK }), /unexpected end of stream/);
    await assert.rejects(writeEstargzLayer(store, late(Buffer.alloc(2048, 0x41))), /checksum/);
    await assert.rejects(writeEstargzLayer(store, late(input.subarray(0, 70_000), new Error('upstream went away'))), /upstream went away/);
    await assert.rejects(writeEstargzLayer(store, Readable.from([input]), { chunkSize: 0 }), /chunk size/);
    await assert.rejects(writeEstargzLayer(store, Readable.from([input]), { gzipLevel: 11 }), /gzip level/);
    assert.equal(await blobCount(), before);
  });
});

async function blobCount(): Promise<number> {
  let n = 0;
  for await (const _ of store.list('blobs/')) n++;
  return n;
}

/** A one-image OCI layout around the eStargz layer, annotated as a registry would serve it. */
async function writeLayout(dir: string, tag: string, blob: Buffer, layer: WrittenEstargzLayer): Promise<void> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (bytes: Buffer, mediaType: string) => {
    const digest = sha256(bytes);
    await writeFile(path.join(blobs, digest.slice(7)), bytes);
    return { mediaType, digest, size: bytes.length };
  };
  await put(blob, MediaType.ociLayerGzip);
  const config: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.diffID] } };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: await put(Buffer.from(JSON.stringify(config)), MediaType.ociConfig),
    layers: [{ mediaType: MediaType.ociLayerGzip, digest: layer.digest, size: layer.size, annotations: layer.annotations }],
  };
  const top = await put(Buffer.from(JSON.stringify(manifest)), MediaType.ociManifest);
  const index: ImageIndex = { schemaVersion: 2, manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }] };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

/** path → "dir <mode>" | "file <mode> <sha256>[ link]" | "symlink <target>" | "fifo <mode>" | "char". */
async function walk(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const inodes = new Map<number, number>();
  const visit = async (rel: string): Promise<void> => {
    for (const name of await readdir(path.join(root, rel))) {
      const child = rel ? `${rel}/${name}` : name;
      const st = await lstat(path.join(root, child));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out.set(child, `dir ${mode}`);
        await visit(child);
      } else if (st.isSymbolicLink()) out.set(child, `symlink ${await readlink(path.join(root, child))}`);
      else if (st.isFIFO()) out.set(child, `fifo ${mode}`);
      else if (st.isCharacterDevice()) out.set(child, 'char');
      else {
        inodes.set(st.ino, (inodes.get(st.ino) ?? 0) + 1);
        out.set(child, `file ${mode} ${sha256(await readFile(path.join(root, child)))}#${st.ino}`);
      }
    }
  };
  await visit('');
  // Replace inode numbers by a mark on files that share theirs (hardlinks).
  for (const [name, kind] of out) {
    const m = /^(.*)#(\d+)$/.exec(kind);
    if (m) out.set(name, m[1]! + ((inodes.get(Number(m[2])) ?? 0) > 1 ? ' link' : ''));
  }
  return out;
}
