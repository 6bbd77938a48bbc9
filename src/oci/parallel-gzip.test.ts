import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { ParallelGzip } from './parallel-gzip.js';

const compress = async (chunks: Buffer[], blockSize: number) =>
  buffer(Readable.from(chunks).pipe(new ParallelGzip({ level: 1, blockSize, concurrency: 3 })));

test('members come out in input order and gunzip to the input', async () => {
  // Blocks of very different compressibility finish out of order on the thread pool.
  const chunks = Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? randomBytes(70_000) : Buffer.alloc(50_000 + i, i)));
  const input = Buffer.concat(chunks);
  const output = await compress(chunks, 64 * 1024);
  assert.ok(gunzipSync(output).equals(input));
  // More than one member: the gzip magic appears at several member starts.
  assert.ok(output.indexOf(Buffer.from([0x1f, 0x8b, 0x08]), 1) > 0);
});

test('empty input is one valid empty gzip member', async () => {
  const output = await compress([], 1024);
  assert.equal(gunzipSync(output).length, 0);
  assert.equal(output[0], 0x1f);
});

test('input shorter than a block is one member', async () => {
  const input = Buffer.from('short');
  const output = await compress([input], 1024);
  assert.equal(gunzipSync(output).toString(), 'short');
  assert.equal(output.indexOf(Buffer.from([0x1f, 0x8b, 0x08]), 1), -1);
});
