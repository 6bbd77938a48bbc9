import assert from 'node:assert/strict';
import { test, before, after } from 'node:test';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { apkFixture, apkFixturePath, fixtureKey } from '../../test/support/apk-fixtures.js';
import { ApkError } from './errors.js';
import { readApkIndexArchive } from './index-archive.js';
import { checkDataHash, scanApkData } from './package-data.js';
import { readApkHead } from './package-file.js';
import { verifyApkPackage } from './verify.js';
import type { ApkPackage } from './types.js';

let work: string;
before(async () => (work = await mkdtemp(path.join(tmpdir(), 'kontain-apk-test-'))));
after(async () => rm(work, { recursive: true, force: true }));

const melangeKey = [fixtureKey('apko-melange-repo/melange.rsa.pub')];
const melangeIndex = (arch: string) =>
  readApkIndexArchive(apkFixture(`apko-melange-repo/${arch}/APKINDEX.tar.gz`), melangeKey, 'r', arch).packages;
const record = (packages: ApkPackage[], name: string) => packages.find((p) => p.name === name)!;

test('.PKGINFO of replayout: name, version, depend, replaces, datahash', async () => {
  const head = await readApkHead(apkFixturePath('apko-melange-repo/x86_64/replayout-1.0.0-r0.apk'), 'replayout');
  assert.equal(head.pkginfo.name, 'replayout');
  assert.equal(head.pkginfo.version, '1.0.0-r0');
  assert.equal(head.pkginfo.arch, 'x86_64');
  assert.equal(head.pkginfo.size, 3389);
  assert.equal(head.pkginfo.origin, 'replayout');
  assert.deepEqual(head.pkginfo.depends, ['pretend-baselayout']);
  assert.deepEqual(head.pkginfo.replaces, ['pretend-baselayout']);
  assert.equal(head.pkginfo.datahash, 'ce688706f6aa287b05f02c507876b43389992b08fb4f84f99117bd5694e45d4c');
  assert.equal(head.pkginfo.fields.get('url')?.[0], '', 'empty value kept');
  assert.deepEqual(head.signatures.map((s) => `${s.algorithm}/${s.keyName}`), ['RSA256/melange.rsa.pub']);
});

test('every melange and private-repo package verifies against its index and key, and lists its files', async () => {
  for (const arch of ['x86_64', 'aarch64']) {
    for (const pkg of melangeIndex(arch)) {
      const file = apkFixturePath(`apko-melange-repo/${arch}/${pkg.name}-${pkg.version}.apk`);
      const verified = await verifyApkPackage(file, pkg, melangeKey, pkg.name);
      assert.equal(verified.signedBy, 'melange.rsa.pub');
      assert.ok(verified.entries.some((e) => e.type === 'file' && e.sha1), `${pkg.name} files carry APK-TOOLS.checksum.SHA1`);
    }
    const privateKey = [fixtureKey('apko-private-repo/private_pkg_key.rsa.pub')];
    const privateIndex = readApkIndexArchive(apkFixture(`apko-private-repo/${arch}/APKINDEX.tar.gz`), privateKey, 'r', arch).packages;
    const x = await verifyApkPackage(apkFixturePath(`apko-private-repo/${arch}/package-x-1.0.0-r0.apk`), record(privateIndex, 'package-x'), privateKey, 'x');
    const hello = x.entries.find((e) => e.path === 'x/hello.txt')!;
    assert.equal(hello.size, 6, 'x/hello.txt holds "HELLO\\n"');
    assert.equal(hello.sha1, createHash('sha1').update('HELLO\n').digest('hex'), 'PAX checksum of its content');
  }
});

test('a package signed by a different key than its index (RSA vs RSA256) verifies with both keys', async () => {
  const index = readApkIndexArchive(apkFixture('alpine/rsa256-test-repo/APKINDEX.tar.gz'), [fixtureKey('alpine/rsa256-test-repo/test-rsa256.rsa.pub')], 'r', 'rsa256');
  const verified = await verifyApkPackage(
    apkFixturePath('alpine/v3.16/main/aarch64/alpine-baselayout-3.2.0-r23.apk'),
    record(index.packages, 'alpine-baselayout'),
    [fixtureKey('alpine/keys/alpine-devel@lists.alpinelinux.org-616ae350.rsa.pub')],
    'alpine-baselayout',
  );
  assert.equal(verified.signedBy, 'alpine-devel@lists.alpinelinux.org-616ae350.rsa.pub');
});

test('neon-4604-r0.apk is refused: its signature fails with the Wolfi key, and its data does not match its datahash', async () => {
  const file = apkFixturePath('wolfi/does-not-verify/neon-4604-r0.apk');
  const head = await readApkHead(file, 'neon');
  const pretend: ApkPackage = { name: 'neon', version: '4604-r0', arch: 'aarch64', checksum: '', size: 0, installedSize: 0, depends: [], provides: [], installIf: [], repository: 'r' };
  await assert.rejects(verifyApkPackage(file, pretend, [fixtureKey('wolfi/keys/wolfi-signing.rsa.pub')], 'neon-4604-r0.apk'), (err: unknown) => {
    return err instanceof ApkError && err.failure === 'bad-signature' && /neon-4604-r0\.apk/.test(err.message);
  });
  const scanned = await scanApkData(file, head.dataOffset, 'neon');
  assert.throws(() => checkDataHash(scanned, head.pkginfo.datahash, 'neon'), (err: unknown) => err instanceof ApkError && err.failure === 'checksum-mismatch');
});

test('one flipped byte in the data member is refused as a datahash mismatch; in the control member as a bad signature', async () => {
  const original = apkFixture('apko-melange-repo/x86_64/pretend-baselayout-1.0.0-r0.apk');
  const pkg = record(melangeIndex('x86_64'), 'pretend-baselayout');
  const head = await readApkHead(apkFixturePath('apko-melange-repo/x86_64/pretend-baselayout-1.0.0-r0.apk'), 'p');
  // A byte inside the deflate body of the data member (not its header or trailer).
  const dataByte = Buffer.from(original);
  dataByte[head.dataOffset + 40]! ^= 0x01;
  const dataFile = path.join(work, 'data.apk');
  await writeFile(dataFile, dataByte);
  await assert.rejects(verifyApkPackage(dataFile, pkg, melangeKey, 'data.apk'), (err: unknown) => err instanceof ApkError && /data\.apk/.test(err.message));

  const controlByte = Buffer.from(original);
  controlByte[head.dataOffset - 30]! ^= 0x01;
  const controlFile = path.join(work, 'control.apk');
  await writeFile(controlFile, controlByte);
  await assert.rejects(verifyApkPackage(controlFile, pkg, melangeKey, 'control.apk'), (err: unknown) => err instanceof ApkError && /control\.apk/.test(err.message));
});

test('a package whose control member is not the one the index lists is refused with a checksum mismatch', async () => {
  const index = melangeIndex('x86_64');
  const wrong = { ...record(index, 'pretend-baselayout'), checksum: record(index, 'replayout').checksum };
  await assert.rejects(
    verifyApkPackage(apkFixturePath('apko-melange-repo/x86_64/pretend-baselayout-1.0.0-r0.apk'), wrong, melangeKey, 'p'),
    (err: unknown) => err instanceof ApkError && err.failure === 'checksum-mismatch' && /C:Q11\/HhSe/.test(err.message),
  );
});
