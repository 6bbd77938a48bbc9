import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRandomTag } from './random.js';
import { RegistryError } from '../registry/errors.js';

test('NxSIZE is found anywhere in the tag, with units', () => {
  assert.deepEqual(parseRandomTag('4x100'), { layers: 4, size: 100 });
  assert.deepEqual(parseRandomTag('foo-2x300-bar'), { layers: 2, size: 300 });
  assert.deepEqual(parseRandomTag('1x3kb'), { layers: 1, size: 3000 });
  assert.deepEqual(parseRandomTag('1x3KiB'), { layers: 1, size: 3072 });
  assert.deepEqual(parseRandomTag('2x5mb'), { layers: 2, size: 5_000_000 });
  assert.deepEqual(parseRandomTag('2x5MiB'), { layers: 2, size: 5 * 1024 * 1024 });
  assert.deepEqual(parseRandomTag('99x99999999'), { layers: 99, size: 99_999_999 });
});

test('latest or no pattern is one layer of 10,000,000 bytes', () => {
  assert.deepEqual(parseRandomTag('latest'), { layers: 1, size: 10_000_000 });
  assert.deepEqual(parseRandomTag('v1'), { layers: 1, size: 10_000_000 });
});

test('beyond the caps is refused with the limit in the message', () => {
  for (const [tag, message] of [
    ['100x1', /1 to 99 layers/],
    ['0x1', /1 to 99 layers/],
    ['1x0', /1 to 99,999,999 bytes/],
    ['1x100000000', /1 to 99,999,999 bytes/],
    ['1x100mb', /1 to 99,999,999 bytes/],
    ['1x99999999999999999999999', /1 to 99,999,999 bytes/],
  ] as const) {
    assert.throws(() => parseRandomTag(tag), (err: unknown) => err instanceof RegistryError && err.status === 404 && message.test(err.message), tag);
  }
});
