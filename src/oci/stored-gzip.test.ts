import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { StoredGzip } from './stored-gzip.js';

async function storedGzip(chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of Readable.from(chunks).pipe(new StoredGzip())) out.push(c as Buffer);
  return Buffer.concat(out);
}

test('zlib inflates what StoredGzip writes, for empty, small, block-sized and large inputs', async () => {
  for (const sizes of [[], [0], [1], [65535], [65536], [70000, 3, 200000], [1 << 20, 1 << 20]]) {
    const chunks = sizes.map((n) => randomBytes(n));
    const whole = Buffer.concat(chunks);
    const gz = await storedGzip(chunks);
    assert.deepEqual(gunzipSync(gz), whole, `sizes ${sizes.join(',')}`);
    // Stored blocks add 5 bytes per 64 KiB block, plus an 18-byte gzip frame and a 5-byte final block.
    assert.ok(gz.length <= whole.length + 23 + 5 * Math.ceil(whole.length / 65535) + 5 * chunks.length);
  }
});

test('a corrupted byte fails the CRC check', async () => {
  const gz = await storedGzip([randomBytes(1000)]);
  gz[100] ^= 0xff;
  assert.throws(() => gunzipSync(gz), /incorrect data check|invalid/);
});
