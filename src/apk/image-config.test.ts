import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseApkoImage } from './image-config.js';
import { shellWords } from './shell-words.js';
import { groupFile, passwdFile } from './accounts.js';
import { apkArchOf, platformOfApkArch } from './arch.js';
import { ApkError } from './errors.js';

test('an apko configuration: contents, accounts, entrypoint, cmd, environment, work-dir, archs', () => {
  const image = parseApkoImage(`
contents:
  repositories:
    - https://packages.wolfi.dev/os
    - "@local https://example.com/local"
  keyring: [https://packages.wolfi.dev/os/wolfi-signing.rsa.pub]
  packages: [wolfi-base, ca-certificates-bundle]
entrypoint:
  command: /bin/sh -c 'echo "hi there"'
cmd: --verbose
work-dir: /app
environment:
  FOO: bar
  N: 3
accounts:
  groups: [{ groupname: nonroot, gid: 65532, members: [nonroot] }]
  users: [{ username: nonroot, uid: 65532 }]
  run-as: 65532
archs: [amd64, arm64, arm/v7, x86_64]
annotations: { a: b }
`);
  assert.deepEqual(image.repositories, ['https://packages.wolfi.dev/os', '@local https://example.com/local']);
  assert.deepEqual(image.packages, ['wolfi-base', 'ca-certificates-bundle']);
  assert.deepEqual(image.entrypoint, ['/bin/sh', '-c', 'echo "hi there"']);
  assert.deepEqual(image.cmd, ['--verbose']);
  assert.equal(image.workDir, '/app');
  assert.deepEqual(image.environment, { FOO: 'bar', N: '3' });
  assert.equal(image.runAs, '65532');
  assert.deepEqual(image.archs, ['x86_64', 'aarch64', 'armv7'], 'apko names mapped, duplicates dropped');
  assert.deepEqual(image.ignored, ['annotations']);
  assert.deepEqual(image.users, [{ username: 'nonroot', uid: 65532, gid: undefined, shell: undefined, homedir: undefined }]);
});

test('wrong types and unsafe account names are refused naming the key', () => {
  const refused = (yaml: string, pattern: RegExp) =>
    assert.throws(() => parseApkoImage(yaml), (err: unknown) => err instanceof ApkError && pattern.test(err.message), yaml);
  refused('contents: { packages: busybox }', /contents\.packages must be a list/);
  refused('archs: [sparc]', /archs/);
  refused('accounts: { users: [{ username: "a:b", uid: 1 }] }', /username/);
  refused('accounts: { users: [{ username: a, uid: -1 }] }', /uid/);
  refused('accounts: { users: [{ username: a, uid: 1, shell: "/bin/sh\\nroot::0:0::/:/bin/sh" }] }', /shell/);
  refused('key: [unclosed', /not valid YAML/);
});

test('shell words: quotes, escapes, errors', () => {
  assert.deepEqual(shellWords(`a "b c" 'd "e"' f\\ g ""`), ['a', 'b c', 'd "e"', 'f g', '']);
  assert.throws(() => shellWords('"open'), /unterminated/);
});

test('passwd and group: configured accounts appended after the packages\' own, existing names kept', () => {
  assert.equal(
    passwdFile('root:x:0:0:root:/root:/bin/sh', [{ username: 'root', uid: 5 }, { username: 'app', uid: 10, gid: 20, homedir: '/app', shell: '/bin/false' }]),
    'root:x:0:0:root:/root:/bin/sh\napp:x:10:20:app:/app:/bin/false\n',
  );
  assert.equal(groupFile('', [{ groupname: 'app', gid: 20, members: ['app', 'web'] }]), 'app:x:20:app,web\n');
});

test('architecture names between apko/OCI and apk', () => {
  assert.equal(apkArchOf('amd64'), 'x86_64');
  assert.equal(apkArchOf('linux/arm64'), 'aarch64');
  assert.equal(apkArchOf('aarch64'), 'aarch64');
  assert.equal(apkArchOf('mips'), undefined);
  assert.deepEqual(platformOfApkArch('armv7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.deepEqual(platformOfApkArch('x86_64'), { os: 'linux', architecture: 'amd64' });
});
