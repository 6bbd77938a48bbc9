import assert from 'node:assert/strict';
import { test } from 'node:test';
import { apkFixture, apkFixturePath, fixtureKey } from '../../test/support/apk-fixtures.js';
import { readApkIndexArchive } from './index-archive.js';
import { installedRecord } from './installed-db.js';
import { parseApkIndexText } from './index-file.js';
import type { DataEntry } from './package-data.js';
import { verifyApkPackage } from './verify.js';

test('the installed record of pretend-baselayout: index fields, then its directories and files with Q1 checksums', async () => {
  const key = [fixtureKey('apko-melange-repo/melange.rsa.pub')];
  const index = readApkIndexArchive(apkFixture('apko-melange-repo/x86_64/APKINDEX.tar.gz'), key, 'r', 'x').packages;
  const pkg = index.find((p) => p.name === 'pretend-baselayout')!;
  const verified = await verifyApkPackage(apkFixturePath('apko-melange-repo/x86_64/pretend-baselayout-1.0.0-r0.apk'), pkg, key, 'p');
  const text = installedRecord(pkg, verified.entries);
  const lines = text.split('\n');
  assert.deepEqual(lines.slice(0, 4), ['C:Q1m6wB0UFePGN8Drz82pC8y2uAiu8=', 'P:pretend-baselayout', 'V:1.0.0-r0', 'A:x86_64']);
  assert.ok(text.endsWith('\n\n'), 'a blank line ends the record');
  // etc/os-release is owned by uid 501, gid 20 (dialout) in the package's tar.
  const at = lines.indexOf('F:etc');
  assert.ok(at > 0);
  assert.equal(lines[at + 1], 'R:os-release');
  assert.equal(lines[at + 2], 'a:501:20:644');
  assert.match(lines[at + 3]!, /^Z:Q1[A-Za-z0-9+/]{27}=$/);
  assert.ok(lines.includes('F:var/lib/db/sbom'));
  assert.ok(lines.includes('R:pretend-baselayout-1.0.0-r0.spdx.json'));
  // The record reads back as an index record with the same identity.
  const [back] = parseApkIndexText(text, 'r');
  assert.equal(back!.checksum, pkg.checksum);
});

test('files in the root go under a bare F: that never carries M:; odd directories get M:, odd files a:', () => {
  const entry = (path: string, type: DataEntry['type'], mode: number, uid = 0): DataEntry => ({ path, type, mode, uid, gid: 0, size: 0, mtime: new Date(0) });
  const pkg = { name: 'x', version: '1', arch: 'x86_64', checksum: 'Q1AAAA', size: 1, installedSize: 1, depends: [], provides: ['cmd:x=1'], installIf: [], repository: 'r', replaces: ['y'] };
  const text = installedRecord(pkg, [
    { ...entry('top', 'file', 0o644), sha1: '00'.repeat(20) },
    entry('tmp', 'directory', 0o1777),
    entry('tmp/link', 'symlink', 0o777),
    entry('home', 'directory', 0o755, 1000),
  ]);
  assert.equal(
    text,
    ['C:Q1AAAA', 'P:x', 'V:1', 'A:x86_64', 'S:1', 'I:1', 'p:cmd:x=1', 'r:y', 'F:', 'R:top', 'Z:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'F:tmp', 'M:0:0:1777', 'R:link', 'a:0:0:777', 'F:home', 'M:1000:0:755', '', ''].join('\n'),
  );
});
