import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import type { ContentStore } from '../content/store.js';
import { StoreCopy } from './store-copy.js';

const log = pino({ level: 'silent' });
const DIGEST = 'sha256:' + '0'.repeat(64);

/** A store whose putBlob takes `take` chunks, then fails as a full disk would. */
function failingStore(take: number): ContentStore {
  return {
    putBlob: async (body: Readable) => {
      let taken = 0;
      for await (const chunk of body) {
        void chunk;
        if (++taken >= take) break;
      }
      throw new Error('ENOSPC: no space left on device');
    },
    readBlob: async () => assert.fail('a failed copy is never read back'),
  } as unknown as ContentStore;
}

test('a store that fails mid-copy stops the upstream body and fails the client that follows it', { timeout: 10_000 }, async () => {
  const body = new PassThrough({ highWaterMark: 1024 });
  const copy = new StoreCopy(body, 1 << 20, DIGEST, failingStore(2), { verified: true, log });
  const client = await copy.source().open();
  client.on('error', () => undefined); // read below, from client.errored
  // The upstream keeps sending: without a reader left, it must not be held open, paused.
  const sending = setInterval(() => body.write(Buffer.alloc(1024, 1)), 1);
  try {
    await assert.rejects(copy.stored, /ENOSPC/);
    if (!body.closed) await once(body, 'close');
    assert.equal(body.destroyed, true);
    if (!client.closed) await once(client, 'close').catch(() => undefined);
    assert.match(String(client.errored), /ENOSPC/);
  } finally {
    clearInterval(sending);
  }
});
