import assert from 'node:assert/strict';
import { test } from 'node:test';
import { apkFixture, fixtureKey } from '../../test/support/apk-fixtures.js';
import { ApkError } from './errors.js';
import { readApkIndexArchive } from './index-archive.js';
import { keyBaseName } from './signature.js';

const ALPINE_INDEX = 'alpine/v3.16/main/x86_64/APKINDEX.tar.gz';

test('the real Alpine 3.16 index verifies with its RSA/SHA-1 key and lists 4929 packages', () => {
  const index = readApkIndexArchive(apkFixture(ALPINE_INDEX), [fixtureKey('alpine/keys/alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub')], 'https://example/alpine', ALPINE_INDEX);
  assert.equal(index.packages.length, 4929);
  assert.equal(index.description, 'v3.16.3-13-g4d933a1fa3');
  assert.equal(index.signedBy, 'alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub');
});

test('the Alpine 3.16 index with the wrong Alpine key is refused, naming the signer', () => {
  assert.throws(
    () => readApkIndexArchive(apkFixture(ALPINE_INDEX), [fixtureKey('alpine/keys/alpine-devel@lists.alpinelinux.org-4a6a0840.rsa.pub')], 'r', ALPINE_INDEX),
    (err: unknown) => err instanceof ApkError && err.failure === 'bad-signature' && /6165ee59/.test(err.message),
  );
});

test('an RSA256 (SHA-256) index verifies: the melange repository', () => {
  for (const arch of ['x86_64', 'aarch64']) {
    const index = readApkIndexArchive(apkFixture(`apko-melange-repo/${arch}/APKINDEX.tar.gz`), [fixtureKey('apko-melange-repo/melange.rsa.pub')], 'r', arch);
    assert.deepEqual(index.packages.map((p) => p.name).sort(), ['custom-ca-certs-1', 'custom-ca-certs-2', 'pretend-baselayout', 'replayout']);
    assert.ok(index.packages.every((p) => p.arch === arch));
  }
});

test('one flipped byte in the signed member, or the signature, is refused', () => {
  const original = apkFixture('apko-melange-repo/x86_64/APKINDEX.tar.gz');
  const key = [fixtureKey('apko-melange-repo/melange.rsa.pub')];
  const inIndex = Buffer.from(original);
  inIndex[original.length - 20]! ^= 0x01;
  assert.throws(() => readApkIndexArchive(inIndex, key, 'r', 'tampered'), (err: unknown) => err instanceof ApkError && err.failure === 'bad-signature');
  const inSignature = Buffer.from(original);
  inSignature[100]! ^= 0x01;
  assert.throws(() => readApkIndexArchive(inSignature, key, 'r', 'tampered'), ApkError);
});

test('a key matches whether or not its name keeps the .rsa.pub ending', () => {
  assert.equal(keyBaseName('melange.rsa.pub'), 'melange');
  assert.equal(keyBaseName('https://example.com/keys/melange'), 'melange');
  const renamed = { ...fixtureKey('apko-melange-repo/melange.rsa.pub'), name: 'melange' };
  const index = readApkIndexArchive(apkFixture('apko-melange-repo/x86_64/APKINDEX.tar.gz'), [renamed], 'r', 'renamed key');
  assert.equal(index.packages.length, 4);
});

test('signatures by keys outside the keyring are skipped; the message says which key signed', () => {
  assert.throws(
    () => readApkIndexArchive(apkFixture('apko-private-repo/x86_64/APKINDEX.tar.gz'), [fixtureKey('apko-melange-repo/melange.rsa.pub')], 'r', 'private'),
    (err: unknown) => err instanceof ApkError && /private_pkg_key\.rsa\.pub/.test(err.message) && /not in the trusted keyring/.test(err.message),
  );
});
