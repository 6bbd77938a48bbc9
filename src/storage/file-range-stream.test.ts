import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { openSync, writeFileSync, fstatSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { withTempDir } from '../../test/support/temp-dir.js';
import { FileRangeStream } from './file-range-stream.js';

/** Waits for the stream's 'close', which follows its descriptor's close; a wide bound keeps a stream that never closes a failure, not a hang. */
const closed = (stream: FileRangeStream) =>
  stream.closed ? Promise.resolve() : Promise.race([once(stream, 'close'), delay(30_000, undefined, { ref: false }).then(() => assert.fail('the stream never closed'))]);

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A writable that copies each chunk only when it acknowledges it, late: reuse before the callback would show. */
function slowSink(): { sink: Writable; received: () => Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, callback) {
      setTimeout(() => {
        parts.push(Buffer.from(chunk));
        callback();
      }, 20);
    },
  });
  return { sink, received: () => Buffer.concat(parts) };
}

test('sendTo delivers exactly the bytes, even to a consumer slower than the reads', () =>
  withTempDir('frs-', async (dir) => {
    const data = randomBytes(5 * (1 << 20) + 12345);
    const file = path.join(dir, 'blob');
    writeFileSync(file, data);
    const { sink, received } = slowSink();
    await new FileRangeStream(openSync(file, 'r'), 0, data.length).sendTo(sink);
    assert.equal(sha(received()), sha(data));
    const range = slowSink();
    await new FileRangeStream(openSync(file, 'r'), 1000, 3 * (1 << 20) + 7).sendTo(range.sink);
    assert.equal(sha(range.received()), sha(data.subarray(1000, 3 * (1 << 20) + 7)));
  }));

test('read as a stream it gives the same bytes, and closes its descriptor', () =>
  withTempDir('frs-', async (dir) => {
    const data = randomBytes(2 * (1 << 20) + 1);
    const file = path.join(dir, 'blob');
    writeFileSync(file, data);
    const fd = openSync(file, 'r');
    const stream = new FileRangeStream(fd, 10, data.length);
    assert.equal(sha(await buffer(stream)), sha(data.subarray(10)));
    // Not a fixed wait: 10 ms was too short for the close on a loaded machine.
    await closed(stream);
    assert.throws(() => fstatSync(fd), /EBADF/);
  }));

test('a consumer that goes away stops sendTo with an error and the descriptor is closed', () =>
  withTempDir('frs-', async (dir) => {
    const file = path.join(dir, 'blob');
    writeFileSync(file, randomBytes(8 * (1 << 20)));
    const fd = openSync(file, 'r');
    let writes = 0;
    const sink = new Writable({
      write(_chunk, _encoding, callback) {
        if (++writes === 2) sink.destroy();
        else callback();
      },
    });
    const stream = new FileRangeStream(fd, 0, 8 * (1 << 20));
    await assert.rejects(stream.sendTo(sink));
    await closed(stream);
    assert.throws(() => fstatSync(fd), /EBADF/);
  }));
