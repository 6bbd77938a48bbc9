import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BATCH_BYTES, BATCH_CHUNKS, BatchedFileWriter } from './batched-file-writer.js';

/** `total` random bytes cut into chunks of the given sizes, repeated. */
function cut(data: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const size = sizes[i % sizes.length]!;
    out.push(data.subarray(at, at + size));
    at += size;
  }
  return out;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

test('the file holds exactly the bytes written, whatever the chunk boundaries', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-batch-'));
  try {
    const data = randomBytes(3 * BATCH_BYTES + 12345);
    const cases: Record<string, number[]> = {
      'socket reads': [64 * 1024],
      'odd sizes': [1, 7, 4093, 65537, 3],
      'one byte short of a batch, then one over': [BATCH_BYTES - 1, BATCH_BYTES + 1],
      'chunks larger than a batch': [2 * BATCH_BYTES + 5],
      'empty chunks between': [0, 1000, 0, 70_000],
      // More chunks than one batch may hold: the count, not the bytes, closes the batch.
      'tiny chunks': [3],
      'everything in one chunk': [data.length],
    };
    for (const [name, sizes] of Object.entries(cases)) {
      const source = name === 'tiny chunks' ? data.subarray(0, 3 * BATCH_CHUNKS + 2) : data;
      const file = path.join(dir, name.replace(/\W+/g, '-'));
      const handle = await open(file, 'wx');
      try {
        await pipeline(Readable.from(cut(source, sizes)), new BatchedFileWriter(handle));
      } finally {
        await handle.close();
      }
      const written = await readFile(file);
      assert.equal(written.length, source.length, name);
      assert.equal(sha256(written), sha256(source), name);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a short write is resumed where it stopped', { timeout: 30_000 }, async () => {
  // A handle whose writev takes at most 1000 bytes per call (any prefix is allowed).
  const taken: Buffer[] = [];
  const handle = {
    async writev(buffers: Buffer[]) {
      const all = Buffer.concat(buffers);
      const n = Math.min(1000, all.length);
      taken.push(Buffer.from(all.subarray(0, n)));
      return { bytesWritten: n, buffers };
    },
  } as unknown as FileHandle;
  const data = randomBytes(BATCH_BYTES / 4 + 777);
  await pipeline(Readable.from(cut(data, [333, 64 * 1024, 1])), new BatchedFileWriter(handle));
  assert.equal(sha256(Buffer.concat(taken)), sha256(data));
});

test('a failing write fails the stream (and the pipeline)', async () => {
  const failure = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  const handle = {
    async writev() {
      throw failure;
    },
  } as unknown as FileHandle;
  const data = randomBytes(2 * BATCH_BYTES);
  await assert.rejects(pipeline(Readable.from(cut(data, [64 * 1024])), new BatchedFileWriter(handle)), (err: unknown) => err === failure);
});
