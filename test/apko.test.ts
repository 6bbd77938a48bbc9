/**
 * The apko host end to end: a package repository on loopback serving the real fixture
 * packages and signed indexes (and packages this test builds and signs), kontain
 * building images from them, skopeo pulling, umoci unpacking. Expected file contents
 * come from the fixture .apk files themselves (read with GNU tar) or from what the test
 * put into the packages it built.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, lstat, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startKontain, type TestServer } from './support/kontain.js';
import { exec, skopeoCopy, skopeoRawManifest, umociUnpack } from './support/tools.js';
import { request, registryError } from './support/http.js';
import { OciLayout } from './support/oci-layout.js';
import { APK_FIXTURES, apkFixture, apkFixturePath } from './support/apk-fixtures.js';
import { startApkRepository, type ApkRepositoryServer } from './support/apk-repository.js';
import { buildApk, buildIndex, makeTestKey, type TestKey } from './support/apk-builder.js';
import type { ImageConfig, ImageIndex } from '../src/oci/types.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

let repo: ApkRepositoryServer;
let trusting: TestServer;
let strict: TestServer;
let work: string;
let testKey: TestKey;
let otherKey: TestKey;

/** Files a fixture .apk installs (not its signature/control entries), as GNU tar lists them. */
async function fixtureFiles(relative: string): Promise<string[]> {
  const { stdout } = await exec('tar', ['-tvzf', apkFixturePath(relative)]);
  // `-rw-r--r-- root/root 512 1970-01-01 00:00 name`: keep regular files.
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('-'))
    .map((line) => line.split(/\s+/).slice(5).join(' '))
    .filter((name) => !name.startsWith('.'));
}

async function fixtureFileBytes(relative: string, name: string): Promise<Buffer> {
  const { stdout } = await exec('tar', ['-xzOf', apkFixturePath(relative), name]);
  return Buffer.from(stdout, 'binary');
}

const sha1 = (data: Buffer | string) => createHash('sha1').update(data).digest('hex');

/** Pulls `ref` into an OCI layout and unpacks it; returns the rootfs and the image config. */
async function pullAndUnpack(server: TestServer, ref: string, name: string, extra: string[] = []): Promise<{ rootfs: string; config: ImageConfig }> {
  const dir = path.join(work, name);
  await skopeoCopy(`docker://${server.address}/${ref}`, `oci:${dir}:t`, extra);
  const layout = new OciLayout(dir);
  const manifest = await layout.manifest('t');
  assert.equal(manifest.layers.length, 1, 'apko images have one layer');
  const config = JSON.parse((await layout.blob(manifest.config.digest)).toString('utf8')) as ImageConfig;
  const bundle = path.join(work, `${name}-bundle`);
  await umociUnpack(`${dir}:t`, bundle);
  return { rootfs: path.join(bundle, 'rootfs'), config };
}

async function manifestError(server: TestServer, repository: string, tag = 'latest') {
  const result = await request(`${server.url}/v2/${repository}/manifests/${tag}`, { headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
  return { status: result.status, ...(result.status >= 400 ? registryError(result) : { code: '', message: '' }) };
}

const installedNames = (db: string) => [...db.matchAll(/^P:(.+)$/gm)].map((m) => m[1]);

/** The R: lines of one package's record in the installed database, as full paths. */
function installedFiles(db: string, name: string): string[] {
  const record = db.split('\n\n').find((r) => r.split('\n').includes(`P:${name}`))!;
  const files: string[] = [];
  let dir = '';
  for (const line of record.split('\n')) {
    if (line.startsWith('F:')) dir = line.slice(2);
    if (line.startsWith('R:')) files.push(dir ? `${dir}/${line.slice(2)}` : line.slice(2));
  }
  return files;
}

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-apko-test-'));
  repo = await startApkRepository();
  await repo.addDirectory('/melange', path.join(APK_FIXTURES, 'apko-melange-repo'));
  await repo.addDirectory('/private', path.join(APK_FIXTURES, 'apko-private-repo'));

  // A repository of packages this test builds and signs: a dependency chain through
  // so: and cmd: provides, files with known contents, a conflict and a tampered package.
  testKey = makeTestKey('kontain-test.rsa.pub');
  otherKey = makeTestKey('someone-else.rsa.pub');
  const built = [
    buildApk({ name: 'libgreet', version: '1.2-r0', provides: ['so:libgreet.so.1=1'], files: [{ path: 'usr/lib/libgreet.so.1', content: 'greet library v1\n' }] }, testKey),
    buildApk(
      {
        name: 'greeter',
        version: '2.0-r1',
        depends: ['so:libgreet.so.1'],
        provides: ['cmd:greet=2.0-r1'],
        builddate: 1710000000,
        files: [
          { path: 'usr/bin/greet', content: '#!/bin/sh\necho hello from greet\n', mode: 0o755 },
          { path: 'usr/bin/hi', symlink: 'greet' },
          { path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
          { path: 'etc/group', content: 'root:x:0:\n' },
        ],
      },
      testKey,
    ),
    buildApk({ name: 'greet-tools', version: '1-r0', depends: ['cmd:greet', 'greeter>=2.0'], files: [{ path: 'usr/share/greet/README', content: 'tools for greet\n' }] }, testKey),
    buildApk({ name: 'clash-a', version: '1-r0', files: [{ path: 'etc/clash.conf', content: 'a\n' }] }, testKey),
    buildApk({ name: 'clash-b', version: '1-r0', files: [{ path: 'etc/clash.conf', content: 'b\n' }] }, testKey),
    buildApk({ name: 'broken-pkg', version: '1-r0', files: [{ path: 'usr/share/broken', content: 'x'.repeat(4000) }] }, testKey),
  ];
  for (const pkg of built) {
    const bytes = Buffer.from(pkg.bytes);
    // broken-pkg is served with one byte flipped near its end (inside the data member).
    if (pkg.fileName.startsWith('broken-pkg')) bytes[bytes.length - 30]! ^= 0x01;
    repo.files.set(`/custom/x86_64/${pkg.fileName}`, bytes);
  }
  repo.files.set('/custom/x86_64/APKINDEX.tar.gz', buildIndex(built.map((p) => p.record), testKey));
  repo.files.set('/custom/kontain-test.rsa.pub', Buffer.from(testKey.publicPem));
  // The same packages under an index signed by a key nobody trusts.
  repo.files.set('/wrongkey/x86_64/APKINDEX.tar.gz', buildIndex(built.map((p) => p.record), otherKey));
  // The real melange index with one byte of its signed member flipped.
  const tampered = Buffer.from(apkFixture('apko-melange-repo/x86_64/APKINDEX.tar.gz'));
  tampered[tampered.length - 40]! ^= 0x01;
  repo.files.set('/tampered/x86_64/APKINDEX.tar.gz', tampered);

  const yaml = (body: string) => Buffer.from(body.trim() + '\n');
  repo.files.set(
    '/configs/cross.yaml',
    yaml(`
contents:
  repositories:
    - ${repo.url}/melange
    - ${repo.url}/private
  keyring:
    - ${repo.url}/melange/melange.rsa.pub
    - ${repo.url}/private/private_pkg_key.rsa.pub
  packages:
    - package-y
archs: [amd64, arm64]
`),
  );
  repo.files.set(
    '/configs/greet.yaml',
    yaml(`
contents:
  repositories: [${repo.url}/custom]
  keyring: [${repo.url}/custom/kontain-test.rsa.pub]
  packages: [greet-tools]
accounts:
  groups:
    - groupname: nonroot
      gid: 65532
  users:
    - username: nonroot
      uid: 65532
      gid: 65532
  run-as: nonroot
entrypoint:
  command: /usr/bin/greet --loud "two words"
cmd: --help
work-dir: /home/nonroot
environment:
  GREETING: hello
archs: [x86_64]
`),
  );
  for (const [name, packages, where] of [
    ['clash', 'clash-a, clash-b', 'custom'],
    ['broken', 'broken-pkg', 'custom'],
    ['wrongkey', 'greeter', 'wrongkey'],
    ['tampered-index', 'replayout', 'tampered'],
  ] as const) {
    const keyring = where === 'tampered' ? `${repo.url}/melange/melange.rsa.pub` : `${repo.url}/custom/kontain-test.rsa.pub`;
    repo.files.set(`/configs/${name}.yaml`, yaml(`contents:\n  repositories: [${repo.url}/${where}]\n  keyring: [${keyring}]\n  packages: [${packages}]\n`));
  }

  repo.files.set('/configs/local-file.yaml', yaml('contents:\n  repositories: [file:///etc]\n  keyring: [file:///etc/passwd]\n  packages: [busybox]\n'));

  const operator = {
    KONTAIN_APK_REPOSITORY: `${repo.url}/melange`,
    KONTAIN_APK_KEYRING: `${repo.url}/melange/melange.rsa.pub`,
    KONTAIN_APK_ARCHS: 'x86_64',
  };
  trusting = await startKontain({ ...operator, KONTAIN_INSECURE_REGISTRIES: repo.host });
  strict = await startKontain(operator);
});

after(async () => {
  await trusting?.stop();
  await strict?.stop();
  await repo?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('apko/<packages> from the operator repository (real melange fixtures)', () => {
  test('replayout: every resolved package installed with its bytes, the installed database, /etc/apk', async () => {
    const { rootfs, config } = await pullAndUnpack(trusting, 'apko/replayout:latest', 'replayout');
    const db = await readFile(path.join(rootfs, 'lib/apk/db/installed'), 'utf8');
    assert.deepEqual(installedNames(db).sort(), ['pretend-baselayout', 'replayout'], 'replayout pulls in pretend-baselayout');

    for (const name of ['pretend-baselayout', 'replayout']) {
      const apk = `apko-melange-repo/x86_64/${name}-1.0.0-r0.apk`;
      for (const file of await fixtureFiles(apk)) {
        // Both ship etc/os-release; replayout replaces pretend-baselayout, so its copy wins.
        const owner = file === 'etc/os-release' ? 'replayout' : name;
        const expected = await fixtureFileBytes(`apko-melange-repo/x86_64/${owner}-1.0.0-r0.apk`, file);
        assert.deepEqual(await readFile(path.join(rootfs, file)), expected, `${file} of ${name}`);
        if (owner === name) assert.ok(installedFiles(db, name).includes(file), `installed db lists ${file} under ${name}`);
      }
    }
    assert.ok(!installedFiles(db, 'pretend-baselayout').includes('etc/os-release'), 'the replaced file is listed under its new owner only');
    assert.match(db, /^C:Q11\/HhSewwwOXgl0r0ffb0O0BRtYc=\nP:replayout$/m, 'the record carries the index checksum');

    assert.equal(await readFile(path.join(rootfs, 'etc/apk/world'), 'utf8'), 'replayout\n');
    assert.equal(await readFile(path.join(rootfs, 'etc/apk/arch'), 'utf8'), 'x86_64\n');
    assert.equal(await readFile(path.join(rootfs, 'etc/apk/repositories'), 'utf8'), `${repo.url}/melange\n`);
    assert.deepEqual(await readFile(path.join(rootfs, 'etc/apk/keys/melange.rsa.pub')), apkFixture('apko-melange-repo/melange.rsa.pub'));

    assert.equal(config.author, 'github.com/chainguard-dev/apko');
    assert.equal(config.os, 'linux');
    assert.equal(config.architecture, 'amd64');
    assert.equal(config.created, '1970-01-01T00:00:00.000Z', 'the packages were built at t:0');
    assert.ok(config.config?.Env?.includes('PATH=/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin'));
  });

  test('a second pull with the same index fetches no package and gives the same image', async () => {
    const apkRequests = () => repo.requests.filter((p) => p.endsWith('.apk')).length;
    const first = await request(`${trusting.url}/v2/apko/pretend-baselayout/manifests/latest`, { headers: { Accept: OCI_MANIFEST } });
    assert.equal(first.status, 200);
    const fetched = apkRequests();
    const second = await request(`${trusting.url}/v2/apko/pretend-baselayout/manifests/latest`, { headers: { Accept: OCI_MANIFEST } });
    assert.equal(second.status, 200);
    assert.equal(apkRequests(), fetched, 'no .apk fetched on the repeat pull');
    assert.equal(second.headers['docker-content-digest'], first.headers['docker-content-digest']);
  });

  test('an unknown package is a 404 naming it', async () => {
    const { status, code, message } = await manifestError(trusting, 'apko/no-such-package');
    assert.equal(status, 404);
    assert.equal(code, 'MANIFEST_UNKNOWN');
    assert.match(message, /no-such-package/);
  });

  test('an unreachable repository is a 424 (a status every client prints the message of) naming its URL', async () => {
    const down = await startKontain({
      KONTAIN_APK_REPOSITORY: 'http://127.0.0.1:1/nothing',
      KONTAIN_APK_KEYRING: `${repo.url}/melange/melange.rsa.pub`,
    });
    try {
      const { status, code, message } = await manifestError(down, 'apko/replayout');
      assert.equal(status, 424);
      assert.equal(code, 'UNAVAILABLE');
      assert.match(message, /http:\/\/127\.0\.0\.1:1\/nothing\/x86_64\/APKINDEX\.tar\.gz/);
    } finally {
      await down.stop();
    }
  });

  test('the operator may name a file:// repository and a key file path', async () => {
    const local = await startKontain({
      KONTAIN_APK_REPOSITORY: `file://${path.join(APK_FIXTURES, 'apko-melange-repo')}`,
      KONTAIN_APK_KEYRING: apkFixturePath('apko-melange-repo/melange.rsa.pub'),
    });
    try {
      const result = await request(`${local.url}/v2/apko/replayout/manifests/latest`, { headers: { Accept: OCI_MANIFEST } });
      assert.equal(result.status, 200, result.body.toString());
    } finally {
      await local.stop();
    }
  });

  test('tags other than latest are refused, saying why', async () => {
    const { status, code, message } = await manifestError(trusting, 'apko/replayout', 'v1');
    assert.equal(status, 404);
    assert.equal(code, 'MANIFEST_UNKNOWN');
    assert.match(message, /latest/);
  });
});

describe('apko/url/<host>/<path>.yaml', () => {
  const url = (name: string) => `apko/url/${repo.host.replace(':', '-')}/configs/${name}.yaml`;

  test('two repositories, two keys, two archs: an index with both platforms, the cross-repository closure in each', async () => {
    const raw = JSON.parse((await skopeoRawManifest(`docker://${trusting.address}/${url('cross')}:latest`)).toString('utf8')) as ImageIndex;
    assert.equal(raw.mediaType, OCI_INDEX);
    assert.deepEqual(raw.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`).sort(), ['linux/amd64', 'linux/arm64']);
    for (const [arch, oci] of [['x86_64', 'amd64'], ['aarch64', 'arm64']] as const) {
      const { rootfs, config } = await pullAndUnpack(trusting, `${url('cross')}:latest`, `cross-${arch}`, ['--override-arch', oci]);
      assert.equal(config.architecture, oci);
      const db = await readFile(path.join(rootfs, 'lib/apk/db/installed'), 'utf8');
      assert.deepEqual(installedNames(db).sort(), ['package-x', 'package-y', 'pretend-baselayout']);
      assert.deepEqual(await readFile(path.join(rootfs, 'y/hello.txt')), await fixtureFileBytes(`apko-private-repo/${arch}/package-y-1.0.0-r0.apk`, 'y/hello.txt'));
      assert.deepEqual(await readFile(path.join(rootfs, 'x/hello.txt')), await fixtureFileBytes(`apko-private-repo/${arch}/package-x-1.0.0-r0.apk`, 'x/hello.txt'));
      assert.equal(await readFile(path.join(rootfs, 'etc/apk/arch'), 'utf8'), `${arch}\n`);
      assert.equal(await readFile(path.join(rootfs, 'etc/apk/world'), 'utf8'), 'package-y\n');
    }
  });

  test('so: and cmd: provides resolve a chain; accounts, entrypoint, cmd, env and work-dir reach the image', async () => {
    const { rootfs, config } = await pullAndUnpack(trusting, `${url('greet')}:latest`, 'greet');
    const db = await readFile(path.join(rootfs, 'lib/apk/db/installed'), 'utf8');
    assert.deepEqual(installedNames(db).sort(), ['greet-tools', 'greeter', 'libgreet']);
    assert.equal(await readFile(path.join(rootfs, 'usr/bin/greet'), 'utf8'), '#!/bin/sh\necho hello from greet\n');
    assert.equal((await lstat(path.join(rootfs, 'usr/bin/greet'))).mode & 0o777, 0o755);
    assert.equal(await readlink(path.join(rootfs, 'usr/bin/hi')), 'greet');
    assert.equal(await readFile(path.join(rootfs, 'usr/lib/libgreet.so.1'), 'utf8'), 'greet library v1\n');
    assert.equal(await readFile(path.join(rootfs, 'usr/share/greet/README'), 'utf8'), 'tools for greet\n');
    // The database's Z: is the SHA-1 of each file's content.
    const greeter = db.split('\n\n').find((r) => r.includes('\nP:greeter\n'))!;
    assert.match(greeter, new RegExp(`\\nR:greet\\na:0:0:755\\nZ:Q1${Buffer.from(sha1('#!/bin/sh\necho hello from greet\n'), 'hex').toString('base64').replace(/[+/]/g, '\\$&')}\\n`));

    assert.equal(await readFile(path.join(rootfs, 'etc/passwd'), 'utf8'), 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n');
    assert.equal(await readFile(path.join(rootfs, 'etc/group'), 'utf8'), 'root:x:0:\nnonroot:x:65532:\n');
    assert.equal(config.config?.User, 'nonroot');
    assert.deepEqual(config.config?.Entrypoint, ['/usr/bin/greet', '--loud', 'two words']);
    assert.deepEqual(config.config?.Cmd, ['--help']);
    assert.equal(config.config?.WorkingDir, '/home/nonroot');
    const env = config.config?.Env ?? [];
    assert.deepEqual(env, [...env].sort(), 'Env is sorted');
    assert.ok(env.includes('GREETING=hello'));
    assert.ok(env.some((e) => e.startsWith('PATH=')));
    assert.equal(config.created, new Date(1710000000 * 1000).toISOString(), 'created is the newest build date');
  });

  test('a tampered package is refused with a 4xx naming it', async () => {
    const { status, message } = await manifestError(trusting, url('broken'));
    assert.ok(status >= 400 && status < 500, `status ${status}`);
    assert.match(message, /broken-pkg/);
  });

  test('a tampered index and an index signed by an untrusted key are refused as bad signatures', async () => {
    for (const name of ['tampered-index', 'wrongkey']) {
      const { status, message } = await manifestError(trusting, url(name));
      assert.ok(status >= 400 && status < 500, `${name}: status ${status}`);
      assert.match(message, /signature/, name);
      assert.match(message, /APKINDEX/, name);
    }
  });

  test('two packages installing the same file without replaces are refused, naming both', async () => {
    const { status, message } = await manifestError(trusting, url('clash'));
    assert.ok(status >= 400 && status < 500, `status ${status}`);
    assert.match(message, /clash-a/);
    assert.match(message, /clash-b/);
    assert.match(message, /etc\/clash\.conf/);
  });

  test('a repository named inside a fetched configuration may not be a local file', async () => {
    const { status, code, message } = await manifestError(trusting, url('local-file'));
    assert.equal(status, 403);
    assert.equal(code, 'DENIED');
    assert.match(message, /file:\/\/\/etc/);
  });

  test('a configuration on a loopback address is refused when the host is not in KONTAIN_INSECURE_REGISTRIES', async () => {
    const { status, code, message } = await manifestError(strict, url('greet'));
    assert.equal(status, 403);
    assert.equal(code, 'DENIED');
    assert.match(message, /127\.0\.0\.1/);
    assert.match(message, /KONTAIN_INSECURE_REGISTRIES/);
  });
});
