import assert from 'node:assert/strict';
import { test } from 'node:test';
import { apkFixture } from '../../test/support/apk-fixtures.js';
import { splitGzipMembers } from './gzip-members.js';
import { parseApkIndexText } from './index-file.js';
import { readTarFragment } from './tar-fragment.js';

function indexText(relative: string): string {
  const members = splitGzipMembers(apkFixture(relative));
  return readTarFragment(members[1]!.data).find((e) => e.name === 'APKINDEX')!.data.toString('utf8');
}

test('the Alpine 3.16 index: every field of the busybox record', () => {
  const packages = parseApkIndexText(indexText('alpine/v3.16/main/x86_64/APKINDEX.tar.gz'), 'https://dl-cdn.alpinelinux.org/alpine/v3.16/main');
  assert.equal(packages.length, 4929);
  const busybox = packages.find((p) => p.name === 'busybox')!;
  assert.deepEqual(busybox, {
    name: 'busybox',
    version: '1.35.0-r17',
    arch: 'x86_64',
    checksum: 'Q1iZ+C2JJdBlm2KKtAOkSkM7zZegY=',
    size: 507831,
    installedSize: 962560,
    description: 'Size optimized toolbox of many common UNIX utilities',
    url: 'https://busybox.net/',
    license: 'GPL-2.0-only',
    origin: 'busybox',
    maintainer: 'Sören Tempel <soeren+alpine@soeren-tempel.net>',
    buildTime: 1659366884,
    commit: '2bf6ec48e526113f87216683cd341a78af5f0b3f',
    depends: ['so:libc.musl-x86_64.so.1'],
    provides: ['/bin/sh', 'cmd:busybox=1.35.0-r17', 'cmd:sh=1.35.0-r17'],
    installIf: [],
    repository: 'https://dl-cdn.alpinelinux.org/alpine/v3.16/main',
  });
  assert.equal(packages.filter((p) => p.providerPriority !== undefined).length, 72, 'k: lines in the index');
});

test('the melange index: replayout depends on pretend-baselayout, the CA packages provide a virtual name', () => {
  const packages = parseApkIndexText(indexText('apko-melange-repo/x86_64/APKINDEX.tar.gz'), 'r');
  const byName = new Map(packages.map((p) => [p.name, p]));
  assert.deepEqual(byName.get('replayout')!.depends, ['pretend-baselayout']);
  assert.equal(byName.get('replayout')!.checksum, 'Q11/HhSewwwOXgl0r0ffb0O0BRtYc=');
  assert.equal(byName.get('replayout')!.size, 2961);
  assert.equal(byName.get('replayout')!.buildTime, 0);
  assert.deepEqual(byName.get('custom-ca-certs-1')!.provides, ['custom-ca-certificates']);
  assert.deepEqual(byName.get('custom-ca-certs-2')!.provides, ['custom-ca-certificates']);
});

test('empty values (as apko writes D:, p:, c:) and CRLF line ends are accepted', () => {
  const [pkg, second] = parseApkIndexText('P:a\r\nV:1-r0\r\nD:\r\np:\r\nc:\r\nU:\r\n\r\nP:b\nV:2\nr:a c\n', 'r');
  assert.deepEqual(pkg!.depends, []);
  assert.deepEqual(pkg!.provides, []);
  assert.equal(pkg!.commit, '');
  assert.equal(pkg!.url, '');
  assert.deepEqual(second!.replaces, ['a', 'c']);
});

test('a line that is not X:value is refused with its line number', () => {
  assert.throws(() => parseApkIndexText('P:a\nV:1\nnonsense\n', 'r'), /line 3/);
});
