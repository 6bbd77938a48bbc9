import assert from 'node:assert/strict';
import { test } from 'node:test';
import { apkFixture, apkFixturePath, fixtureKey } from '../../test/support/apk-fixtures.js';
import { ApkError } from './errors.js';
import { readApkIndexArchive } from './index-archive.js';
import { planInstall, resolveThroughLinks } from './install-plan.js';
import type { DataEntry } from './package-data.js';
import { verifyApkPackage, type VerifiedApk } from './verify.js';

async function melange(name: string): Promise<VerifiedApk> {
  const key = [fixtureKey('apko-melange-repo/melange.rsa.pub')];
  const index = readApkIndexArchive(apkFixture('apko-melange-repo/x86_64/APKINDEX.tar.gz'), key, 'r', 'x').packages;
  return verifyApkPackage(apkFixturePath(`apko-melange-repo/x86_64/${name}-1.0.0-r0.apk`), index.find((p) => p.name === name)!, key, name);
}

test('replayout replaces pretend-baselayout: its etc/os-release wins whichever order they install in', async () => {
  const base = await melange('pretend-baselayout');
  const replacement = await melange('replayout');
  for (const order of [[base, replacement], [replacement, base]]) {
    const plan = planInstall(order);
    const winner = order.indexOf(replacement);
    assert.equal(plan.writer.get('etc/os-release'), winner);
    assert.ok(plan.packages[winner]!.owned.some((e) => e.path === 'etc/os-release'));
    assert.ok(!plan.packages[1 - winner]!.owned.some((e) => e.path === 'etc/os-release'));
    assert.ok(plan.packages[1 - winner]!.owned.some((e) => e.path === 'etc'), 'shared directories stay listed for both');
  }
});

const entry = (path: string, extra: Partial<DataEntry> = {}): DataEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, mtime: new Date(0), ...extra });
function fake(name: string, entries: DataEntry[], extra: { origin?: string; replaces?: string[] } = {}): VerifiedApk {
  return {
    record: { name, version: '1', arch: 'x86_64', checksum: '', size: 0, installedSize: 0, depends: [], provides: [], installIf: [], repository: 'r', ...(extra.origin ? { origin: extra.origin } : {}) },
    path: '',
    head: { signatures: [], controlBytes: Buffer.alloc(0), control: [], dataOffset: 0, pkginfo: { name, version: '1', arch: 'x86_64', depends: [], provides: [], replaces: extra.replaces ?? [], installIf: [], triggers: [], fields: new Map() } },
    entries,
    signedBy: '',
  };
}

test('a file installed twice is a conflict unless same origin, identical content or replaces', () => {
  assert.throws(() => planInstall([fake('a', [entry('etc/x')]), fake('b', [entry('etc/x')])]), (err: unknown) => err instanceof ApkError && err.failure === 'file-conflict' && /a-1 .*b-1|b-1 .*a-1/.test(err.message));
  assert.equal(planInstall([fake('a', [entry('etc/x')], { origin: 'o' }), fake('b', [entry('etc/x')], { origin: 'o' })]).writer.get('etc/x'), 1);
  assert.equal(planInstall([fake('a', [entry('etc/x', { sha1: 'aa' })]), fake('b', [entry('etc/x', { sha1: 'aa' })])]).writer.get('etc/x'), 1);
  assert.equal(planInstall([fake('a', [entry('etc/x')]), fake('b', [entry('etc/x')], { replaces: ['a<2'] })]).writer.get('etc/x'), 1);
  assert.throws(() => planInstall([fake('a', [entry('etc', { type: 'directory' })]), fake('b', [entry('etc')])]), /directory/);
});

test('generated paths follow the image\'s own directory symlinks', () => {
  const plan = planInstall([fake('layout', [entry('lib', { type: 'symlink', linkname: 'usr/lib' }), entry('usr/lib', { type: 'directory' }), entry('bin', { type: 'symlink', linkname: '/usr/bin' })])]);
  assert.equal(resolveThroughLinks(plan, 'lib/apk/db/installed'), 'usr/lib/apk/db/installed');
  assert.equal(resolveThroughLinks(plan, 'bin/sh'), 'usr/bin/sh');
  assert.equal(resolveThroughLinks(plan, 'etc/apk/world'), 'etc/apk/world');
});
