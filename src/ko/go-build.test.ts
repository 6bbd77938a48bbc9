import { test } from 'node:test';
import assert from 'node:assert/strict';
import { platformEnv, trimMessage } from './go-build.js';

test('platform variants become GOARM and GOAMD64 as ko sets them', () => {
  assert.deepEqual(platformEnv({ os: 'linux', architecture: 'arm64' }), { CGO_ENABLED: '0', GOOS: 'linux', GOARCH: 'arm64' });
  assert.equal(platformEnv({ os: 'linux', architecture: 'arm', variant: 'v7' }).GOARM, '7');
  assert.equal(platformEnv({ os: 'linux', architecture: 'arm', variant: 'v8' }).GOARM, '7');
  assert.equal(platformEnv({ os: 'linux', architecture: 'arm', variant: 'v6' }).GOARM, '6');
  assert.equal(platformEnv({ os: 'linux', architecture: 'arm', variant: 'v4' }).GOARM, undefined);
  assert.equal(platformEnv({ os: 'linux', architecture: 'amd64', variant: 'v3' }).GOAMD64, 'v3');
});

test('compiler output is cut to its first lines', () => {
  const output = Array.from({ length: 50 }, (_, i) => `./main.go:${i}:2: undefined: thing${i}`).join('\n');
  const trimmed = trimMessage(output);
  assert.match(trimmed, /^\.\/main\.go:0:2: undefined: thing0/);
  assert.match(trimmed, /… \(30 more lines\)$/);
  assert.ok(!trimmed.includes('thing20'));
});
