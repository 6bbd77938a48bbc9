import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pageTags } from './tags.js';

const ALL = ['v2', 'latest', 'v10', 'a', 'v1'];

test('tags are sorted lexically (byte order) even when the source is not', () => {
  assert.deepEqual(pageTags(ALL, {}, false), { tags: ['a', 'latest', 'v1', 'v10', 'v2'] });
});

test('n and last page a list the source did not page, with the next page named', () => {
  assert.deepEqual(pageTags(ALL, { n: 2 }, false), { tags: ['a', 'latest'], next: 'latest' });
  assert.deepEqual(pageTags(ALL, { n: 2, last: 'latest' }, false), { tags: ['v1', 'v10'], next: 'v10' });
  assert.deepEqual(pageTags(ALL, { n: 2, last: 'v10' }, false), { tags: ['v2'] });
  assert.deepEqual(pageTags(ALL, { last: 'v1' }, false), { tags: ['v10', 'v2'] });
});

test('n=0 is an empty list with no next page', () => {
  assert.deepEqual(pageTags(ALL, { n: 0 }, true), { tags: [] });
});

test('a source that has more after a full page keeps the next link', () => {
  assert.deepEqual(pageTags(['b', 'a'], { n: 2 }, true), { tags: ['a', 'b'], next: 'b' });
  assert.deepEqual(pageTags(['b', 'a'], { n: 5 }, true), { tags: ['a', 'b'], next: 'b' });
});
