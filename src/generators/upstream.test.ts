import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UpstreamError } from '../remote/errors.js';
import { ModuleProxyError } from '../ko/module-proxy.js';
import { isUpstreamOutage, upstreamFailure } from './upstream.js';

const failure = (status: number, code?: string) => new UpstreamError({ registry: 'r.example', status, code, message: 'upstream r.example did something' });
const answer = (err: unknown, kind?: 'blob') => {
  const e = upstreamFailure(err, kind)!;
  return { status: e.status, code: e.code };
};

test('one answer for each kind of upstream failure', () => {
  assert.deepEqual(answer(failure(0, 'UNRESOLVABLE')), { status: 404, code: 'NAME_UNKNOWN' });
  assert.deepEqual(answer(failure(0, 'UNREACHABLE')), { status: 424, code: 'UNAVAILABLE' });
  assert.deepEqual(answer(failure(0, 'TIMEOUT')), { status: 424, code: 'UNAVAILABLE' });
  assert.deepEqual(answer(failure(503)), { status: 424, code: 'UNAVAILABLE' });
  assert.deepEqual(answer(failure(504)), { status: 424, code: 'UNAVAILABLE' });
  assert.deepEqual(answer(failure(404)), { status: 404, code: 'MANIFEST_UNKNOWN' });
  assert.deepEqual(answer(failure(404), 'blob'), { status: 404, code: 'BLOB_UNKNOWN' });
  assert.deepEqual(answer(failure(401)), { status: 403, code: 'DENIED' });
  assert.deepEqual(answer(failure(0, 'ADDRESS_REFUSED')), { status: 403, code: 'DENIED' });
  assert.deepEqual(answer(failure(429)), { status: 429, code: 'TOOMANYREQUESTS' });
  assert.deepEqual(answer(failure(200, 'DIGEST_INVALID')), { status: 424, code: 'UNAVAILABLE' });
  assert.deepEqual(answer(failure(400)), { status: 424, code: 'UNAVAILABLE' });
  assert.equal(upstreamFailure(new Error('not an upstream failure')), undefined);
});

test("a Go module proxy's failures are answered like a registry's", () => {
  for (const [status, code] of [[0, 'UNRESOLVABLE'], [0, 'UNREACHABLE'], [0, 'TIMEOUT'], [500, undefined]] as const) {
    assert.deepEqual(answer(new ModuleProxyError('proxy.example', 'module proxy proxy.example failed', { status, code })), answer(failure(status, code)));
  }
});

test('outages (stale-if-error may answer) are the upstream being down, not refusals or absence', () => {
  assert.equal(isUpstreamOutage(failure(0, 'UNREACHABLE')), true);
  assert.equal(isUpstreamOutage(failure(0, 'TIMEOUT')), true);
  assert.equal(isUpstreamOutage(failure(502)), true);
  assert.equal(isUpstreamOutage(failure(429)), true);
  assert.equal(isUpstreamOutage(failure(404)), false);
  assert.equal(isUpstreamOutage(failure(0, 'ADDRESS_REFUSED')), false);
});
