import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fixtureIndexPackages } from '../../test/support/apk-fixtures.js';
import { parseDependency, parseProvide, satisfies } from './dependency.js';
import { resolvePackages } from './resolve.js';
import { type ApkPackage, ResolveError } from './types.js';

const REPO = 'https://example.test/main';

/** A synthetic record; only what a rule needs is given. */
function pkg(name: string, version: string, more: Partial<ApkPackage> = {}): ApkPackage {
  return { name, version, arch: 'x86_64', checksum: `Q1${name}${version}=`, size: 1, installedSize: 1, depends: [], provides: [], installIf: [], repository: REPO, ...more };
}

const ids = (list: ApkPackage[]) => list.map((p) => `${p.name}-${p.version}`);
const sortedIds = (list: ApkPackage[]) => ids(list).sort();

function fails(fn: () => unknown, failure: ResolveError['failure'], message: RegExp | string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ResolveError, String(e));
    assert.equal(e.failure, failure, e.message);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

/**
 * What must hold for any answer: one package per name, every dependency met inside the set,
 * no `!` conflict hit, and each package placed after the packages it depends on (other
 * than itself) unless they form a cycle.
 */
function assertConsistent(chosen: ApkPackage[]): void {
  const names = chosen.map((p) => p.name);
  assert.equal(new Set(names).size, names.length, `a name twice in ${names.join(' ')}`);
  const offers = chosen.flatMap((p) => [{ name: p.name, version: p.version as string | undefined, p }, ...p.provides.flatMap((t) => {
    try {
      const pr = parseProvide(t);
      return [{ name: pr.name, version: pr.version, p }];
    } catch {
      return [];
    }
  })]);
  const position = new Map(chosen.map((p, i) => [p, i]));
  const needs = (p: ApkPackage) =>
    p.depends.flatMap((t) => {
      const dep = parseDependency(t);
      return dep.conflict ? [] : offers.filter((o) => o.name === dep.name && o.p !== p).map((o) => o.p);
    });
  // Whether `from` depends, directly or not, on `to`: then the two share a cycle and either order is allowed.
  const reaches = (from: ApkPackage, to: ApkPackage) => {
    const seen = new Set([from]);
    const todo = [from];
    while (todo.length > 0) {
      for (const n of needs(todo.pop()!)) {
        if (n === to) return true;
        if (!seen.has(n)) seen.add(n), todo.push(n);
      }
    }
    return false;
  };
  for (const p of chosen) {
    for (const token of p.depends) {
      const dep = parseDependency(token);
      const meeting = offers.filter((o) => o.name === dep.name && (dep.op === undefined || (o.version !== undefined && satisfies(dep, o.version, o.p.checksum))));
      if (dep.conflict) {
        assert.equal(meeting.filter((o) => o.p !== p).length, 0, `${p.name} forbids ${token}`);
        continue;
      }
      assert.ok(meeting.length > 0, `${p.name}-${p.version} needs ${token}`);
      const placedBefore = meeting.some((o) => o.p === p || position.get(o.p)! < position.get(p)!);
      const cyclic = meeting.some((o) => reaches(o.p, p));
      assert.ok(placedBefore || cyclic, `${p.name} placed before its dependency ${token}`);
    }
  }
}


// ---- synthetic records, one rule each ----

test('dependencies come before dependents; independent packages by name', () => {
  const available = [pkg('a', '1-r0', { depends: ['b'] }), pkg('b', '1-r0', { depends: ['c'] }), pkg('c', '1-r0'), pkg('z', '1-r0'), pkg('unused', '1-r0')];
  assert.deepEqual(ids(resolvePackages(['z', 'a'], available)), ['c-1-r0', 'b-1-r0', 'a-1-r0', 'z-1-r0']);
});

test('the newest version is chosen, within the version constraint', () => {
  const available = [pkg('foo', '1.0-r0'), pkg('foo', '3.0-r0'), pkg('foo', '2.0-r0'), pkg('foo', '2.1_rc1-r0')];
  assert.deepEqual(ids(resolvePackages(['foo'], available)), ['foo-3.0-r0']);
  assert.deepEqual(ids(resolvePackages(['foo<3'], available)), ['foo-2.1_rc1-r0']);
  assert.deepEqual(ids(resolvePackages(['foo~2.0'], available)), ['foo-2.0-r0']);
  assert.deepEqual(ids(resolvePackages(['foo=1.0-r0'], available)), ['foo-1.0-r0']);
});

test('one package per name: a pinned version serves the later dependency too', () => {
  const available = [pkg('foo', '1.0-r0'), pkg('foo', '2.0-r0'), pkg('bar', '1-r0', { depends: ['foo'] })];
  assert.deepEqual(ids(resolvePackages(['foo=1.0-r0', 'bar'], available)), ['foo-1.0-r0', 'bar-1-r0']);
});

test('a later constraint on a name already chosen restarts resolution with it applied', () => {
  const available = [pkg('app', '1-r0', { depends: ['lib'] }), pkg('lib', '1.0-r0'), pkg('lib', '2.0-r0')];
  assert.deepEqual(ids(resolvePackages(['app', 'lib<2'], available)), ['lib-1.0-r0', 'app-1-r0']);
});

test('contradictory constraints on one name are unsatisfiable, naming both', () => {
  const available = [pkg('app', '1-r0', { depends: ['lib>=2'] }), pkg('lib', '1.0-r0'), pkg('lib', '2.0-r0')];
  fails(() => resolvePackages(['lib<2', 'app'], available), 'unsatisfiable', /^lib<2 \(needed by the requested world\) cannot be satisfied: available lib versions 2\.0-r0, 1\.0-r0; it must also satisfy lib>=2 \(needed by app-1-r0\)$/);
});

test('an unsatisfiable version names the constraint, who needs it and what exists', () => {
  const available = [pkg('foo', '1.0-r0', { depends: ['bar>=2'] }), pkg('bar', '1.0-r0')];
  fails(() => resolvePackages(['foo'], available), 'unsatisfiable', 'bar>=2 (needed by foo-1.0-r0) cannot be satisfied: available bar versions 1.0-r0');
});

test('an unknown name names the repositories searched', () => {
  const available = [pkg('foo', '1-r0', { depends: ['ghost'] }), pkg('x', '1-r0', { repository: 'https://example.test/community' })];
  fails(() => resolvePackages(['nope'], available), 'unknown-package', `package nope not found in ${REPO}, https://example.test/community`);
  fails(() => resolvePackages(['foo'], available), 'unknown-package', /^package ghost \(needed by foo-1-r0\) not found in /);
});

test('!name conflicts: from a package and from the world', () => {
  const available = [pkg('a', '1-r0', { depends: ['!b'] }), pkg('b', '1-r0'), pkg('c', '1-r0', { depends: ['b'] })];
  fails(() => resolvePackages(['a', 'b'], available), 'conflict', /b-1-r0.*a-1-r0|a-1-r0.*b-1-r0/);
  fails(() => resolvePackages(['!b', 'c'], available), 'conflict', /b-1-r0/);
  // A versioned conflict leaves other versions allowed.
  const versioned = [pkg('a', '1-r0', { depends: ['!b<2'] }), pkg('b', '1-r0'), pkg('b', '2-r0'), pkg('c', '1-r0', { depends: ['b'] })];
  assert.deepEqual(sortedIds(resolvePackages(['a', 'c'], versioned)), ['a-1-r0', 'b-2-r0', 'c-1-r0']);
});

test('so: and cmd: names are met by versioned provides', () => {
  const available = [
    pkg('app', '1-r0', { depends: ['so:libfoo.so.1', 'cmd:tool', 'so:libc.so.6'] }),
    pkg('libfoo', '1.4-r0', { provides: ['so:libfoo.so.1=1.4'], depends: ['so:libc.so.6'] }),
    pkg('tools', '2.0-r0', { provides: ['cmd:tool=2.0-r0'] }),
    pkg('libc', '2.36-r0', { provides: ['so:libc.so.6=6'] }),
  ];
  const chosen = resolvePackages(['app'], available);
  assert.deepEqual(ids(chosen), ['libc-2.36-r0', 'libfoo-1.4-r0', 'tools-2.0-r0', 'app-1-r0']);
  assertConsistent(chosen);
});

test('the provider with the higher provided version wins, then the newer package', () => {
  const available = [
    pkg('old-ssl', '9-r0', { provides: ['so:libssl.so.3=3.0.1'] }),
    pkg('new-ssl', '1-r0', { provides: ['so:libssl.so.3=3.0.7'] }),
    pkg('ssl', '3.0.5-r2', { provides: ['so:libcrypto.so.3=3'] }),
    pkg('ssl', '3.0.7-r0', { provides: ['so:libcrypto.so.3=3'] }),
  ];
  assert.deepEqual(ids(resolvePackages(['so:libssl.so.3'], available)), ['new-ssl-1-r0']);
  assert.deepEqual(ids(resolvePackages(['so:libcrypto.so.3'], available)), ['ssl-3.0.7-r0']);
});

test('a name owned by one package (versioned provide) conflicts with another owner', () => {
  const available = [pkg('libfoo', '1-r0', { provides: ['so:libfoo.so.1=1'] }), pkg('libfoo-compat', '1-r0', { provides: ['so:libfoo.so.1=1'] }), pkg('app', '1-r0', { depends: ['so:libfoo.so.1'] })];
  fails(() => resolvePackages(['libfoo', 'libfoo-compat'], available), 'conflict', /libfoo-compat-1-r0.*libfoo-1-r0.*both provide so:libfoo\.so\.1/);
  // An owner already chosen serves later dependents.
  assert.deepEqual(ids(resolvePackages(['libfoo-compat', 'app'], available)), ['libfoo-compat-1-r0', 'app-1-r0']);
});

test('unversioned provides: provider_priority picks, several unprioritised providers are refused', () => {
  const prioritised = [pkg('certs-a', '1-r0', { provides: ['ca-certs'], providerPriority: 10 }), pkg('certs-b', '1-r0', { provides: ['ca-certs'], providerPriority: 20 }), pkg('app', '1-r0', { depends: ['ca-certs'] })];
  assert.deepEqual(ids(resolvePackages(['app'], prioritised)), ['certs-b-1-r0', 'app-1-r0']);
  const plain = [pkg('certs-a', '1-r0', { provides: ['ca-certs'] }), pkg('certs-b', '1-r0', { provides: ['ca-certs'] }), pkg('app', '1-r0', { depends: ['ca-certs'] })];
  fails(() => resolvePackages(['app'], plain), 'unsatisfiable', 'ca-certs (needed by app-1-r0) is a virtual package provided by certs-a, certs-b, none with a provider_priority; choose one by adding it to the package list');
  // Naming one of them settles it, whatever the order of the world.
  assert.deepEqual(ids(resolvePackages(['app', 'certs-a'], plain)), ['certs-a-1-r0', 'app-1-r0']);
});

test('a package of the requested name beats an unversioned provider of it, even a prioritised one', () => {
  const available = [pkg('foo', '1.0-r0'), pkg('foo-alt', '9-r0', { provides: ['foo'], providerPriority: 100 })];
  assert.deepEqual(ids(resolvePackages(['foo'], available)), ['foo-1.0-r0']);
});

test('an unversioned provide offered by a single package is installed', () => {
  const available = [pkg('busybox', '1.35.0-r17', { provides: ['/bin/sh'] }), pkg('base', '1-r0', { depends: ['/bin/sh'] })];
  assert.deepEqual(ids(resolvePackages(['base'], available)), ['busybox-1.35.0-r17', 'base-1-r0']);
  // ...but it cannot meet a versioned constraint.
  fails(() => resolvePackages(['/bin/sh>=1'], available), 'unsatisfiable', /\/bin\/sh>=1 .* \(unversioned\) from busybox-1\.35\.0-r17/);
});

test('install_if: added once every condition is installed, not before', () => {
  const available = [
    pkg('foo', '1.0-r0'),
    pkg('docs', '1-r0'),
    pkg('foo-doc', '1.0-r0', { installIf: ['foo=1.0-r0', 'docs'], depends: ['doc-base'] }),
    pkg('doc-base', '1-r0'),
    pkg('foo-old-doc', '0.9-r0', { installIf: ['foo=0.9-r0', 'docs'] }),
    pkg('foo-nodocs', '1-r0', { installIf: ['foo', '!docs'] }),
  ];
  assert.deepEqual(ids(resolvePackages(['foo'], available)), ['foo-1.0-r0', 'foo-nodocs-1-r0']);
  assert.deepEqual(ids(resolvePackages(['foo', 'docs'], available)), ['doc-base-1-r0', 'docs-1-r0', 'foo-1.0-r0', 'foo-doc-1.0-r0']);
});

test('a cycle a→b→a resolves and is ordered deterministically', () => {
  const available = [pkg('b', '1-r0', { depends: ['a'] }), pkg('a', '1-r0', { depends: ['b'] }), pkg('c', '1-r0', { depends: ['a'] })];
  const first = ids(resolvePackages(['c'], available));
  assert.deepEqual(first, ['a-1-r0', 'b-1-r0', 'c-1-r0']);
  assert.deepEqual(ids(resolvePackages(['c'], [...available].reverse())), first);
});

test('self-provides and provide cycles terminate', () => {
  const available = [
    pkg('apk-tools', '2.12.9-r1', { depends: ['so:libapk.so.3.12.0', 'so:libz.so.1'], provides: ['so:libapk.so.3.12.0=3.12.0', 'cmd:apk=2.12.9-r1'] }),
    pkg('zlib', '1.2.13-r0', { depends: ['so:libapk.so.3.12.0', 'zlib'], provides: ['so:libz.so.1=1', 'zlib=1.2.13-r0'] }),
  ];
  assert.deepEqual(ids(resolvePackages(['apk-tools'], available)), ['apk-tools-2.12.9-r1', 'zlib-1.2.13-r0']);
});

test('the answer does not depend on record order; arch filters records', () => {
  const available = [
    pkg('app', '1-r0', { depends: ['so:x', 'v'] }),
    pkg('x1', '1-r0', { provides: ['so:x=1'] }),
    pkg('x2', '1-r0', { provides: ['so:x=1'] }),
    pkg('v1', '1-r0', { provides: ['v'], providerPriority: 5 }),
    pkg('v2', '1-r0', { provides: ['v'], providerPriority: 5 }),
  ];
  const forward = ids(resolvePackages(['app'], available));
  assert.deepEqual(forward, ['v1-1-r0', 'x1-1-r0', 'app-1-r0']);
  assert.deepEqual(ids(resolvePackages(['app'], [...available].reverse())), forward);
  const mixed = [pkg('foo', '2-r0', { arch: 'aarch64' }), pkg('foo', '1-r0'), pkg('bar', '1-r0', { arch: 'noarch' })];
  assert.deepEqual(ids(resolvePackages(['foo', 'bar'], mixed, { arch: 'x86_64' })), ['bar-1-r0', 'foo-1-r0']);
});

test('>< picks the exact record by checksum', () => {
  const available = [pkg('foo', '1-r0', { checksum: 'Q1AAAA=' }), pkg('foo', '2-r0', { checksum: 'Q1BBBB=' })];
  assert.deepEqual(ids(resolvePackages(['foo><Q1AAAA='], available)), ['foo-1-r0']);
});

test('malformed tokens: in the world, and in a chosen record', () => {
  fails(() => resolvePackages(['foo>=abc'], [pkg('foo', '1-r0')]), 'bad-constraint', /"foo>=abc"/);
  fails(() => resolvePackages(['foo'], [pkg('foo', '1-r0', { depends: ['bar>=x'] })]), 'bad-constraint', /foo-1-r0 .*bar>=x/);
});

// ---- real indexes ----

const WOLFI = 'https://packages.wolfi.dev/os';
const ALPINE = 'https://dl-cdn.alpinelinux.org/alpine/v3.16/main';

test('Wolfi: wolfi-base pulls apk-tools, busybox, wolfi-keys and glibc, and the newer of two openssl records', () => {
  const index = fixtureIndexPackages('wolfi/x86_64/APKINDEX.tar.gz', WOLFI);
  assert.equal(index.length, 47);
  const chosen = resolvePackages(['wolfi-base'], index, { arch: 'x86_64' });
  // Read off the index: wolfi-base D: apk-tools busybox wolfi-keys; apk-tools D: ca-certificates-bundle
  // so:libapk (itself) so:libc.so.6 (glibc) so:libcrypto.so.3 so:libssl.so.3 (openssl 3.0.5-r2 and
  // 3.0.7-r0) so:libz.so.1 (zlib); glibc D: linux-headers wolfi-baselayout and sonames it provides;
  // busybox needs only glibc sonames.
  assert.deepEqual(sortedIds(chosen), [
    'apk-tools-2.12.9-r1',
    'busybox-1.35.0-r2',
    'ca-certificates-bundle-20220614-r1',
    'glibc-2.36-r0',
    'linux-headers-5.16.9-r1',
    'openssl-3.0.7-r0',
    'wolfi-base-1-r0',
    'wolfi-baselayout-1-r2',
    'wolfi-keys-1-r0',
    'zlib-1.2.13-r0',
  ]);
  assert.equal(chosen.at(-1)!.name, 'wolfi-base');
  assertConsistent(chosen);
});

test('Wolfi: build-base pulls the compiler and its libraries', () => {
  const chosen = resolvePackages(['build-base'], fixtureIndexPackages('wolfi/x86_64/APKINDEX.tar.gz', WOLFI));
  // build-base D: binutils gcc make pkgconf wolfi-baselayout; gcc needs libisl/libmpc/libmpfr/libgmp/libstdc++ sonames.
  for (const name of ['binutils', 'gcc', 'make', 'pkgconf', 'wolfi-baselayout', 'glibc', 'isl', 'mpc', 'mpfr', 'gmp', 'libstdc++']) {
    assert.ok(chosen.some((p) => p.name === name), name);
  }
  assertConsistent(chosen);
});

test('Alpine 3.16: busybox is musl then busybox, at the index versions', () => {
  const chosen = resolvePackages(['busybox'], fixtureIndexPackages('alpine/v3.16/main/x86_64/APKINDEX.tar.gz', ALPINE), { arch: 'x86_64' });
  assert.deepEqual(ids(chosen), ['musl-1.2.3-r2', 'busybox-1.35.0-r17']);
  assert.equal(chosen[1]!.checksum, 'Q1iZ+C2JJdBlm2KKtAOkSkM7zZegY=');
  assert.equal(chosen[1]!.repository, ALPINE);
});

test('Alpine 3.16: alpine-baselayout takes busybox as the sole /bin/sh provider; openssl takes the 1.1 libraries', () => {
  const index = fixtureIndexPackages('alpine/v3.16/main/x86_64/APKINDEX.tar.gz', ALPINE);
  const baselayout = resolvePackages(['alpine-baselayout'], index);
  assert.deepEqual(sortedIds(baselayout), ['alpine-baselayout-3.2.0-r23', 'alpine-baselayout-data-3.2.0-r23', 'busybox-1.35.0-r17', 'musl-1.2.3-r2']);
  assertConsistent(baselayout);
  const openssl = resolvePackages(['openssl'], index);
  assert.deepEqual(sortedIds(openssl), ['libcrypto1.1-1.1.1s-r0', 'libssl1.1-1.1.1s-r0', 'musl-1.2.3-r2', 'openssl-1.1.1s-r0']);
  assertConsistent(openssl);
});

test('Alpine 3.16: busybox with openssl brings ssl_client by install_if (busybox=1.35.0-r17 libssl1.1)', () => {
  const index = fixtureIndexPackages('alpine/v3.16/main/x86_64/APKINDEX.tar.gz', ALPINE);
  const chosen = resolvePackages(['busybox', 'openssl'], index);
  assert.ok(ids(chosen).includes('ssl_client-1.35.0-r17'));
  assert.ok(!ids(resolvePackages(['busybox'], index)).some((id) => id.startsWith('ssl_client-')));
  assertConsistent(chosen);
});

test('Alpine 3.16: virtual names go to the highest provider_priority, or to a provider already chosen', () => {
  const index = fixtureIndexPackages('alpine/v3.16/main/x86_64/APKINDEX.tar.gz', ALPINE);
  // postgresql: postgresql13 (k:13) and postgresql14 (k:14); ifupdown-any: busybox-ifupdown (k:200),
  // ifupdown (k:100), ifupdown-ng (k:900).
  assert.ok(ids(resolvePackages(['postgresql'], index)).includes('postgresql14-14.5-r0'));
  assert.ok(!resolvePackages(['postgresql'], index).some((p) => p.name === 'postgresql13'));
  assert.ok(resolvePackages(['ifupdown-any'], index).some((p) => p.name === 'ifupdown-ng'));
  // lua: lua5.1 (k:100), and lua5.2, lua5.3, lua5.4, luajit without k: — only the prioritised one is auto-selected...
  const providers = ['lua5.1', 'lua5.2', 'lua5.3', 'lua5.4', 'luajit'];
  const lua = resolvePackages(['lua'], index).map((p) => p.name);
  assert.deepEqual(providers.filter((n) => lua.includes(n)), ['lua5.1']);
  // ...unless a provider is already part of the world.
  const withLua53 = resolvePackages(['lua', 'lua5.3'], index).map((p) => p.name);
  assert.deepEqual(providers.filter((n) => withLua53.includes(n)), ['lua5.3']);
});

test('apko melange fixture: custom-ca-certificates has two unprioritised providers and is refused', () => {
  const index = fixtureIndexPackages('apko-melange-repo/x86_64/APKINDEX.tar.gz', 'https://example.test/melange');
  fails(() => resolvePackages(['custom-ca-certificates'], index), 'unsatisfiable', /provided by custom-ca-certs-1, custom-ca-certs-2/);
  assert.deepEqual(ids(resolvePackages(['replayout'], index)), ['pretend-baselayout-1.0.0-r0', 'replayout-1.0.0-r0']);
});

test('Alpine 3.16: larger worlds stay consistent, and common ones resolve well under a second', (t) => {
  const index = fixtureIndexPackages('alpine/v3.16/main/x86_64/APKINDEX.tar.gz', ALPINE);
  assert.equal(index.length, 4929);
  const started = performance.now();
  const chosen = resolvePackages(['busybox', 'alpine-baselayout', 'openssl'], index, { arch: 'x86_64' });
  const ms = performance.now() - started;
  t.diagnostic(`busybox alpine-baselayout openssl from 4929 records: ${ms.toFixed(1)} ms`);
  assert.ok(ms < 1000, `${ms} ms`);
  assertConsistent(chosen);
  for (const world of [['alpine-base'], ['python3'], ['git', 'bash', 'curl'], ['build-base']]) assertConsistent(resolvePackages(world, index));
});
