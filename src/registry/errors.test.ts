import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reasonPhrase } from './errors.js';

test('a reason phrase is the message on one line of printable ASCII, cut to a bounded length', () => {
  assert.equal(reasonPhrase('module proxy https://proxy.golang.org could not be reached'), 'module proxy https://proxy.golang.org could not be reached');
  assert.equal(reasonPhrase('line one\r\nline two\ttabbed'), 'line one line two tabbed');
  assert.equal(reasonPhrase('12µs → café'), '12?s ? caf?');
  const long = reasonPhrase('x'.repeat(1000));
  assert.equal(long.length, 300);
  assert.ok(long.endsWith('...'));
});
