import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isRetryableStatus, parseRetryAfter, retryDelay, type RetryPolicy } from './retry.js';

const policy: RetryPolicy = { retries: 3, baseMs: 100, maxDelayMs: 300, maxRetryAfterMs: 2000 };

test('which statuses are worth retrying', () => {
  for (const s of [429, 500, 502, 503, 504]) assert.equal(isRetryableStatus(s), true, String(s));
  for (const s of [200, 400, 401, 403, 404, 416, 501, 505]) assert.equal(isRetryableStatus(s), false, String(s));
});

test('Retry-After as seconds or an HTTP date', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('7', now), 7000);
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:03 GMT', now), 3000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter(undefined, now), undefined);
});

test('exponential backoff with jitter, capped, and bounded attempts', () => {
  assert.equal(retryDelay(policy, 0, undefined, () => 0), 50);
  assert.equal(retryDelay(policy, 0, undefined, () => 1), 100);
  assert.equal(retryDelay(policy, 1, undefined, () => 1), 200);
  assert.equal(retryDelay(policy, 2, undefined, () => 1), 300);
  assert.equal(retryDelay(policy, 3), undefined);
});

test('Retry-After is honoured up to the bound, beyond it the request gives up', () => {
  assert.equal(retryDelay(policy, 0, '1'), 1000);
  assert.equal(retryDelay(policy, 0, '0'), 0);
  assert.equal(retryDelay(policy, 0, '3'), undefined);
  assert.equal(retryDelay(policy, 3, '1'), undefined);
});
