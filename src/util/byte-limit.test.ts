import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ByteLimit, readLimited } from './byte-limit.js';

const chunks = () => Readable.from([Buffer.alloc(600, 1), Buffer.alloc(600, 2)]);

test('readLimited returns bodies up to the limit and refuses one byte more', async () => {
  assert.equal((await readLimited(chunks(), 1200, () => new Error('too big'))).length, 1200);
  await assert.rejects(readLimited(chunks(), 1199, () => new Error('too big')), /too big/);
});

test('ByteLimit counts what passes and fails the pipeline past the limit', async () => {
  const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
  const ok = new ByteLimit(1200, () => new Error('too big'));
  await pipeline(chunks(), ok, sink());
  assert.equal(ok.bytes, 1200);
  await assert.rejects(pipeline(chunks(), new ByteLimit(1000, () => new Error('too big')), sink()), /too big/);
});
