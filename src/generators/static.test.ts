import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pageOf } from './static.js';

test('pageOf pages a sorted tag list after last, n at a time', () => {
  const tags = ['1.0', '1.1', '2.0', 'latest'];
  assert.deepEqual(pageOf(tags, {}), { tags });
  assert.deepEqual(pageOf(tags, { n: 2 }), { tags: ['1.0', '1.1'], next: '1.1' });
  assert.deepEqual(pageOf(tags, { n: 2, last: '1.1' }), { tags: ['2.0', 'latest'] });
  assert.deepEqual(pageOf(tags, { last: 'latest' }), { tags: [] });
  assert.deepEqual(pageOf(tags, { n: 0 }), { tags: [] });
});
