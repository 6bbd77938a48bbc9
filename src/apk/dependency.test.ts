import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fixtureIndexPackages } from '../../test/support/apk-fixtures.js';
import { formatDependency, parseDependency, parseProvide, satisfies } from './dependency.js';
import { ResolveError } from './types.js';


test('dependency tokens: names, conflicts, tags and every operator', () => {
  assert.deepEqual(parseDependency('busybox'), { name: 'busybox', conflict: false });
  assert.deepEqual(parseDependency('!hylafax'), { name: 'hylafax', conflict: true });
  assert.deepEqual(parseDependency('foo@edge'), { name: 'foo', conflict: false, tag: 'edge' });
  assert.deepEqual(parseDependency('foo@edge>=1.2'), { name: 'foo', conflict: false, tag: 'edge', op: '>=', version: '1.2' });
  assert.deepEqual(parseDependency('!foo<2'), { name: 'foo', conflict: true, op: '<', version: '2' });
  for (const op of ['=', '<', '>', '<=', '>=', '~', '>~', '<~'] as const) {
    assert.deepEqual(parseDependency(`musl${op}1.1.24-r7`), { name: 'musl', conflict: false, op, version: '1.1.24-r7' }, op);
  }
  assert.deepEqual(parseDependency('foo><Q1iZ+C2JJdBlm2KKtAOkSkM7zZegY='), { name: 'foo', conflict: false, op: '><', version: 'Q1iZ+C2JJdBlm2KKtAOkSkM7zZegY=' });
  assert.deepEqual(parseDependency('foo=~1.2'), { name: 'foo', conflict: false, op: '~', version: '1.2' }, 'older spelling of ~');
});

test('generated names keep their punctuation (so:, cmd:, pc:, paths)', () => {
  for (const name of ['so:libc.musl-x86_64.so.1', 'so:libstdc++.so.6', 'so:openssl3:so:libcrypto.so.3', 'cmd:[', '/bin/sh', 'py3.10:foo']) {
    assert.equal(parseDependency(name).name, name);
  }
  assert.deepEqual(parseDependency('pc:glib-2.0>=2.56.0'), { name: 'pc:glib-2.0', conflict: false, op: '>=', version: '2.56.0' });
  assert.deepEqual(parseDependency('alpine-baselayout-data=3.2.0-r23'), { name: 'alpine-baselayout-data', conflict: false, op: '=', version: '3.2.0-r23' });
});

test('bad tokens are refused with bad-constraint naming the token', () => {
  for (const token of ['', '>=1.2', 'foo>=', 'foo>=abc', 'foo bar', 'foo><1.0', '!', 'foo@', 'foo=1.0=2', 'foo==1']) {
    assert.throws(
      () => parseDependency(token),
      (e: unknown) => e instanceof ResolveError && e.failure === 'bad-constraint' && e.message.includes(`"${token}"`),
      JSON.stringify(token),
    );
  }
});

test('provide tokens: bare and versioned; a bad version is refused', () => {
  assert.deepEqual(parseProvide('/bin/sh'), { name: '/bin/sh' });
  assert.deepEqual(parseProvide('cmd:hello=2.12-r1'), { name: 'cmd:hello', version: '2.12-r1' });
  assert.deepEqual(parseProvide('so:libz.so.1=1.3.1'), { name: 'so:libz.so.1', version: '1.3.1' });
  assert.deepEqual(parseProvide('so:openssl3:so:libcrypto.so.3=3'), { name: 'so:openssl3:so:libcrypto.so.3', version: '3' });
  // A real provide from the Alpine 3.16 index (librtmp): "v2.4" is not an apk version.
  assert.throws(() => parseProvide('pc:librtmp=v2.4'), (e: unknown) => e instanceof ResolveError && e.failure === 'bad-constraint' && /pc:librtmp=v2\.4/.test(e.message));
  assert.throws(() => parseProvide('=1.0'), ResolveError);
});

test('formatDependency writes the token back', () => {
  for (const token of ['busybox', '!foo', 'foo@edge>=1.2', 'so:libc.so.6', 'foo~1.6', 'foo><Q1abc=']) assert.equal(formatDependency(parseDependency(token)), token);
});

test('satisfies: comparison operators', () => {
  const ok = (token: string, version: string) => satisfies(parseDependency(token), version);
  assert.ok(ok('foo', 'anything'));
  assert.ok(ok('foo=1.2-r0', '1.2-r0'));
  assert.ok(!ok('foo=1.2', '1.2-r0'), '= is exact: 1.2 is not 1.2-r0');
  assert.ok(ok('foo>=1.2', '1.2') && ok('foo>=1.2', '1.10') && !ok('foo>=1.2', '1.1'));
  assert.ok(ok('foo>1.2', '1.2-r1') && !ok('foo>1.2', '1.2'));
  assert.ok(ok('foo<2', '1.99') && ok('foo<2', '2_rc1') && !ok('foo<2', '2'));
  assert.ok(ok('foo<=2', '2') && !ok('foo<=2', '2-r0'));
  assert.ok(ok('musl>=1.1.24-r7', '1.2.3-r2'));
  assert.ok(!ok('foo>=1.0', 'v2.4'), 'a malformed version meets no comparison');
});

test('satisfies: ~ is a component prefix match, >~ and <~ add the fuzzy match to > and <', () => {
  const ok = (token: string, version: string) => satisfies(parseDependency(token), version);
  for (const v of ['1.6', '1.6.0_pre1', '1.6.9_p1', '1.6-r2']) assert.ok(ok('foo~1.6', v), v);
  for (const v of ['1.60', '1.7', '1.5.9', '16']) assert.ok(!ok('foo~1.6', v), v);
  assert.ok(ok('foo>~1.6', '1.6.0_pre1') && ok('foo>~1.6', '1.7') && !ok('foo>~1.6', '1.5'));
  assert.ok(ok('foo<~1.6', '1.6.9') && ok('foo<~1.6', '1.5') && !ok('foo<~1.6', '1.7'));
});

test('satisfies: >< compares the package checksum', () => {
  const dep = parseDependency('busybox><Q1iZ+C2JJdBlm2KKtAOkSkM7zZegY=');
  assert.ok(satisfies(dep, '1.35.0-r17', 'Q1iZ+C2JJdBlm2KKtAOkSkM7zZegY='));
  assert.ok(!satisfies(dep, '1.35.0-r17', 'Q1other='));
  assert.ok(!satisfies(dep, '1.35.0-r17'), 'no checksum, no identity');
});

test('every D:, i: and p: token in the real Alpine 3.16 and Wolfi indexes parses, except provides whose version does not start with a digit', () => {
  let count = 0;
  for (const file of ['alpine/v3.16/main/x86_64/APKINDEX.tar.gz', 'wolfi/x86_64/APKINDEX.tar.gz']) {
    for (const pkg of fixtureIndexPackages(file)) {
      for (const token of [...pkg.depends, ...pkg.installIf]) {
        count++;
        // The Alpine index writes one dependency as opensmtpd=6.8.0p2-r4: digits after the letter.
        assert.doesNotThrow(() => parseDependency(token), token);
      }
      for (const token of pkg.provides) {
        count++;
        const versionIsOdd = /=[^0-9]/.test(token);
        if (versionIsOdd) assert.throws(() => parseProvide(token), ResolveError, token);
        else assert.doesNotThrow(() => parseProvide(token), token);
      }
    }
  }
  assert.ok(count > 20000, `${count} tokens`);
});
