import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReference, InvalidReferenceError, parseReference, registryEndpointHost, type Reference } from './reference.js';

const D = 'sha256:' + 'a'.repeat(64);

const valid: Array<[string, Reference]> = [
  ['busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
  ['busybox:1.36', { registry: 'docker.io', repository: 'library/busybox', tag: '1.36' }],
  ['library/busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
  ['docker.io/busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
  ['index.docker.io/library/busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
  ['jasonh/kontain', { registry: 'docker.io', repository: 'jasonh/kontain', tag: 'latest' }],
  [`busybox@${D}`, { registry: 'docker.io', repository: 'library/busybox', digest: D }],
  [`busybox:1.36@${D}`, { registry: 'docker.io', repository: 'library/busybox', tag: '1.36', digest: D }],
  ['ghcr.io/owner/repo/sub:v1.2.3', { registry: 'ghcr.io', repository: 'owner/repo/sub', tag: 'v1.2.3' }],
  ['localhost/foo', { registry: 'localhost', repository: 'foo', tag: 'latest' }],
  ['localhost:5000/foo/bar:x', { registry: 'localhost:5000', repository: 'foo/bar', tag: 'x' }],
  ['127.0.0.1:5000/a_b__c-d.e', { registry: '127.0.0.1:5000', repository: 'a_b__c-d.e', tag: 'latest' }],
  ['[::1]:5000/foo:tag', { registry: '[::1]:5000', repository: 'foo', tag: 'tag' }],
  ['Registry.Example/foo', { registry: 'Registry.Example', repository: 'foo', tag: 'latest' }],
  // A port-less `host:tag` first component without a slash is a Docker Hub name with a tag.
  ['localhost:5000', { registry: 'docker.io', repository: 'library/localhost', tag: '5000' }],
  ['gcr.io/distroless/static:nonroot_TAG-1.x', { registry: 'gcr.io', repository: 'distroless/static', tag: 'nonroot_TAG-1.x' }],
];

for (const [input, expected] of valid) {
  test(`parses ${input}`, () => {
    assert.deepEqual(parseReference(input), expected);
  });
}

const invalid: Array<[string, RegExp]> = [
  ['', /empty/],
  ['Busybox', /lowercase/],
  ['docker.io/Library/busybox', /lowercase/],
  ['busybox:', /tag "" is not valid/],
  ['busybox:-x', /tag "-x" is not valid/],
  [`busybox:${'t'.repeat(129)}`, /tag .* is not valid/],
  ['busybox@sha256:abc', /digest "sha256:abc" is not valid/],
  [`busybox@sha256:${'A'.repeat(64)}`, /is not valid/],
  [`busybox@sha512:${'a'.repeat(128)}`, /only sha256/],
  ['foo//bar', /path component "" is not valid/],
  ['foo/-bar', /path component "-bar"/],
  ['foo/bar_', /path component "bar_"/],
  ['example.com/', /repository name is missing/],
  ['example.com:99999/foo', /port "99999"/],
  ['example.com:x/foo', /port "x" is not a number/],
  ['exa_mple.com/foo', /registry host "exa_mple.com"/],
  ['a'.repeat(64), /64-character hexadecimal/],
  [`example.com/${'a'.repeat(250)}`, /longer than 255/],
];

for (const [input, message] of invalid) {
  test(`refuses ${JSON.stringify(input.length > 40 ? input.slice(0, 40) + '…' : input)}`, () => {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => err instanceof InvalidReferenceError && message.test(err.message) && err.message.startsWith('invalid image reference'),
    );
  });
}

test('formatReference writes the canonical form and round-trips', () => {
  assert.equal(formatReference(parseReference('busybox')), 'docker.io/library/busybox:latest');
  assert.equal(formatReference(parseReference(`busybox@${D}`)), `docker.io/library/busybox@${D}`);
  for (const input of ['localhost:5000/foo/bar:x', `ghcr.io/o/r:v1@${D}`, '[::1]:5000/foo:tag']) {
    const ref = parseReference(input);
    assert.deepEqual(parseReference(formatReference(ref)), ref);
  }
});

test('Docker Hub is reached at registry-1.docker.io', () => {
  assert.equal(registryEndpointHost('docker.io'), 'registry-1.docker.io');
  assert.equal(registryEndpointHost('ghcr.io'), 'ghcr.io');
});
