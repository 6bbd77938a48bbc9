import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { apkFixture } from '../../test/support/apk-fixtures.js';
import { GzipFormatError, splitGzipMembers } from './gzip-members.js';
import { readTarFragment } from './tar-fragment.js';

test('an .apk splits into signature, control and data members whose spans tile the file', () => {
  const bytes = apkFixture('apko-melange-repo/x86_64/replayout-1.0.0-r0.apk');
  const members = splitGzipMembers(bytes);
  assert.equal(members.length, 3);
  assert.equal(members[0]!.start, 0);
  assert.equal(members[1]!.start, members[0]!.end);
  assert.equal(members[2]!.start, members[1]!.end);
  assert.equal(members[2]!.end, bytes.length);
  assert.deepEqual(readTarFragment(members[0]!.data).map((e) => e.name), ['.SIGN.RSA256.melange.rsa.pub']);
  assert.deepEqual(readTarFragment(members[1]!.data).map((e) => e.name), ['.PKGINFO', '.melange.yaml']);
  // The index's C: is the SHA-1 of the compressed control member (fixture index: C:Q11/HhSewwwOXgl0r0ffb0O0BRtYc=).
  const control = bytes.subarray(members[1]!.start, members[1]!.end);
  assert.equal('Q1' + createHash('sha1').update(control).digest('base64'), 'Q11/HhSewwwOXgl0r0ffb0O0BRtYc=');
});

test('an APKINDEX.tar.gz is a signature member and one index member', () => {
  const members = splitGzipMembers(apkFixture('alpine/v3.16/main/x86_64/APKINDEX.tar.gz'));
  assert.equal(members.length, 2);
  const names = readTarFragment(members[1]!.data).map((e) => e.name).sort();
  assert.deepEqual(names, ['APKINDEX', 'DESCRIPTION']);
});

test('gzip headers with a file name are skipped; a corrupted member fails its CRC', () => {
  const a = gzipSync(Buffer.from('first'));
  // Set FNAME and splice a name into the header, as `gzip file` writes it.
  const named = Buffer.concat([a.subarray(0, 3), Buffer.from([0x08]), a.subarray(4, 10), Buffer.from('name\0'), a.subarray(10)]);
  const both = Buffer.concat([named, gzipSync(Buffer.from('second'))]);
  assert.deepEqual(splitGzipMembers(both).map((m) => m.data.toString()), ['first', 'second']);
  const bad = Buffer.from(both);
  bad.writeUInt32LE(0, named.length - 8);
  assert.throws(() => splitGzipMembers(bad), GzipFormatError);
  assert.throws(() => splitGzipMembers(Buffer.from('not gzip at all')), GzipFormatError);
});
