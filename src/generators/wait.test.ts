import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryError } from '../registry/errors.js';
import { parseGoDuration, parseWaitTag, WAIT_MAX_MS } from './wait.js';

test('parseGoDuration reads what Go time.ParseDuration reads', () => {
  // Cases from Go's time package tests.
  const table: Array<[string, number]> = [
    ['0', 0],
    ['5s', 5e9],
    ['30s', 30e9],
    ['1478s', 1478e9],
    ['-5s', -5e9],
    ['+5s', 5e9],
    ['-0', 0],
    ['+0', 0],
    ['5.0s', 5e9],
    ['5.6s', 5.6e9],
    ['5.s', 5e9],
    ['.5s', 0.5e9],
    ['1.0s', 1e9],
    ['1.00s', 1e9],
    ['1.004s', 1.004e9],
    ['1.0040s', 1.004e9],
    ['100.00100s', 100.001e9],
    ['10ns', 10],
    ['11us', 11e3],
    ['12µs', 12e3], // micro sign
    ['12μs', 12e3], // Greek mu
    ['13ms', 13e6],
    ['14s', 14e9],
    ['15m', 15 * 60e9],
    ['16h', 16 * 3600e9],
    ['3h30m', (3 * 3600 + 30 * 60) * 1e9],
    ['10.5s4m', 4 * 60e9 + 10.5e9],
    ['-2m3.4s', -(2 * 60e9 + 3.4e9)],
    ['1h2m3s4ms5us6ns', 3600e9 + 2 * 60e9 + 3e9 + 4e6 + 5e3 + 6],
    ['39h9m14.425s', (39 * 3600 + 9 * 60 + 14.425) * 1e9],
    ['52763797000ns', 52763797000],
    ['0.3333333333333333333h', 1200e9],
    ['1m30s', 90e9],
    ['500ms', 500e6],
    ['1.5s', 1.5e9],
  ];
  for (const [text, ns] of table) {
    // Float sums may differ from Go's integer arithmetic by a nanosecond or so.
    assert.ok(Math.abs(parseGoDuration(text) - ns) <= 2, `${text}: got ${parseGoDuration(text)}, want ${ns}`);
  }
});

test('parseGoDuration refuses what Go refuses', () => {
  for (const text of ['', '3', '-', 's', '.', '-.', '.s', '+.s', '1d', '1.5x', '3000000h', '9223372036854775808ns', '1s2', 'latest', '1 s', 's1']) {
    assert.throws(() => parseGoDuration(text), Error, text);
  }
});

test('parseWaitTag: latest is 10 s, at most an hour, never negative, non-durations explained', () => {
  assert.equal(parseWaitTag('latest'), 10_000);
  assert.equal(parseWaitTag('1s'), 1000);
  assert.equal(parseWaitTag('500ms'), 500);
  assert.equal(parseWaitTag('1m30s'), 90_000);
  assert.equal(parseWaitTag('0s'), 0);
  assert.equal(parseWaitTag('1h'), WAIT_MAX_MS, 'exactly the limit is allowed');
  assert.equal(parseWaitTag('59m59.999s'), WAIT_MAX_MS - 1);
  for (const tag of ['2h', '1h0m0.001s', '61m', '3601s']) {
    assert.throws(
      () => parseWaitTag(tag),
      (err: unknown) => err instanceof RegistryError && err.code === 'MANIFEST_UNKNOWN' && err.status === 404 && /longer than the limit of 1h/.test(err.message),
      tag,
    );
  }
  assert.throws(
    () => parseWaitTag('soon'),
    (err: unknown) => err instanceof RegistryError && err.code === 'MANIFEST_UNKNOWN' && /not a duration/.test(err.message) && /1m30s/.test(err.message),
  );
  assert.throws(() => parseWaitTag('-1s'), (err: unknown) => err instanceof RegistryError && /negative/.test(err.message));
});
