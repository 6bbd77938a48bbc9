import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveService, serviceFromHost } from './services.js';
import { RegistryError } from './errors.js';

const known = new Set(['random', 'mirror']);

test('host form takes the first label under the domain', () => {
  assert.equal(serviceFromHost('random.kontain.me', 'kontain.me'), 'random');
  assert.equal(serviceFromHost('RANDOM.kontain.me:443', 'kontain.me'), 'random');
  assert.equal(serviceFromHost('kontain.me', 'kontain.me'), undefined);
  assert.equal(serviceFromHost('random.example.com', 'kontain.me'), undefined);
  assert.equal(serviceFromHost('random.kontain.me', ''), undefined);
  assert.deepEqual(resolveService('random.kontain.me', 'kontain.me', 'a/b', known), { service: 'random', repository: 'a/b' });
});

test('path form takes the first segment', () => {
  assert.deepEqual(resolveService('localhost:8080', 'kontain.me', 'random/foo', known), { service: 'random', repository: 'foo' });
  assert.deepEqual(resolveService('10.0.0.1', '', 'mirror/library/busybox', known), { service: 'mirror', repository: 'library/busybox' });
  assert.deepEqual(resolveService(undefined, '', 'random', known), { service: 'random', repository: '' });
});

test('unknown services are NAME_UNKNOWN and list the known ones', () => {
  assert.throws(
    () => resolveService('localhost', '', 'nope/x', known),
    (err: unknown) => err instanceof RegistryError && err.code === 'NAME_UNKNOWN' && /services: mirror, random/.test(err.message),
  );
});
