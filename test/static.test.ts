import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { startKontain, type TestServer } from './support/kontain.js';
import { startNginx, type RunningNginx } from './support/nginx.js';
import { makeStaticTree, type StaticTreeLayout } from './support/static-tree.js';
import { exec, skopeoCopy, umociUnpack } from './support/tools.js';
import { OciLayout } from './support/oci-layout.js';
import { request, registryError } from './support/http.js';
import { MediaType } from '../src/oci/mediatypes.js';
import type { ImageIndex, ImageManifest } from '../src/oci/types.js';

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');
const entry = path.resolve(import.meta.dirname, '../cmd/kontain.js');

let work: string;
let tree: StaticTreeLayout;
let kontain: TestServer;
let nginx: RunningNginx;

const fileDigest = async (...parts: string[]) => sha256(await readFile(path.join(tree.root, ...parts)));
const manifestOf = async (...parts: string[]) => JSON.parse(await readFile(path.join(tree.root, ...parts), 'utf8')) as ImageManifest & ImageIndex;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-static-'));
  tree = await makeStaticTree(path.join(work, 'tree'));
  kontain = await startKontain({ KONTAIN_STATIC_ROOT: tree.root });
  // The export names a variable as the server root, as the seed's users do; the server block sets it.
  const { stdout } = await exec(process.execPath, [entry, 'export', 'nginx', '--name-prefix', 'static', '--server-root', '$registry_root', tree.root]);
  nginx = await startNginx(stdout, { serverLines: [`set $registry_root ${tree.root};`] });
});
after(async () => {
  await kontain?.stop();
  await nginx?.stop();
  await rm(work, { recursive: true, force: true });
});

test('the tree the tests made is deduplicated by hardlink', async () => {
  const blob = (await manifestOf('app', 'oci', 'manifest.json')).layers[0]!.digest.slice(7);
  const a = await stat(path.join(tree.root, 'app', 'oci', blob));
  const b = await stat(path.join(tree.root, 'team', 'tools', '1.0', blob));
  assert.equal(a.ino, b.ino);
  assert.ok(a.nlink >= 3);
});

// The same checks against the static host and against nginx serving the export.
for (const target of ['static host', 'nginx export'] as const) {
  describe(target, () => {
    const address = () => (target === 'static host' ? kontain.address : nginx.address);
    const url = (p: string) => `http://${address()}${p}`;

    /** Copies keeping the served manifest (its digest is checked) and unpacks the files with umoci. */
    async function pullAndUnpack(reference: string, expected: string): Promise<OciLayout> {
      const dir = await mkdtemp(path.join(work, 'pull-'));
      const source = `docker://${address()}/static/${reference}`;
      await skopeoCopy(source, `oci:${dir}/image:t`, ['--preserve-digests']);
      const layout = new OciLayout(path.join(dir, 'image'));
      let unpackable = `${dir}/image:t`;
      if ((await layout.index()).manifests[0]!.mediaType !== MediaType.ociManifest) {
        // umoci unpacks OCI images only: a Docker v2s2 image is converted by a second copy.
        await skopeoCopy(source, `oci:${dir}/converted:t`);
        unpackable = `${dir}/converted:t`;
      }
      const bundle = path.join(dir, 'bundle');
      await umociUnpack(unpackable, bundle);
      assert.equal(await readFile(path.join(bundle, 'rootfs', 'hello.txt'), 'utf8'), expected);
      return layout;
    }

    test('skopeo copies each image by tag with the manifest digest of the file', async () => {
      for (const [name, hello] of Object.entries(tree.hello)) {
        const layout = await pullAndUnpack(name, hello);
        const [repo, tag] = name.split(':') as [string, string];
        const expected = repo === 'layout' ? (await new OciLayout(path.join(tree.root, 'layout')).manifestDigest(tag)) : await fileDigest(repo, tag, 'manifest.json');
        assert.equal(await layout.manifestDigest('t'), expected, name);
      }
    });

    test('skopeo copies by digest', async () => {
      const digest = await fileDigest('team', 'tools', '1.0', 'manifest.json');
      const layout = await pullAndUnpack(`team/tools@${digest}`, 'hello from base');
      assert.equal(await layout.manifestDigest('t'), digest);
    });

    test('skopeo copy --all gets the index and both platform images', async () => {
      const dir = await mkdtemp(path.join(work, 'all-'));
      await skopeoCopy(`docker://${address()}/static/multi:latest`, `oci:${dir}:t`, ['--all', '--preserve-digests']);
      const layout = new OciLayout(dir);
      assert.equal(await layout.manifestDigest('t'), await fileDigest('multi', 'latest', 'manifest.json'));
      const index = JSON.parse((await layout.blob(await layout.manifestDigest('t'))).toString()) as ImageIndex;
      assert.deepEqual(index.manifests.map((m) => m.platform?.architecture), ['amd64', 'arm64']);
      // And by the index's digest.
      const digest = await fileDigest('multi', 'latest', 'manifest.json');
      await skopeoCopy(`docker://${address()}/static/multi@${digest}`, `oci:${dir}:by-digest`, ['--all', '--preserve-digests']);
      assert.equal(await layout.manifestDigest('by-digest'), digest);
      for (const child of index.manifests) {
        assert.equal(sha256(await layout.blob(child.digest)), child.digest);
        const manifest = JSON.parse((await layout.blob(child.digest)).toString()) as ImageManifest;
        for (const layer of manifest.layers) assert.equal(sha256(await layout.blob(layer.digest)), layer.digest);
      }
    });

    test('skopeo list-tags gives each repository its sorted tags', async () => {
      const tags = async (name: string) => {
        const { stdout } = await exec('skopeo', ['list-tags', '--tls-verify=false', `docker://${address()}/static/${name}`]);
        return (JSON.parse(stdout) as { Tags: string[] }).Tags;
      };
      assert.deepEqual(await tags('app'), ['oci', 'v2s2']);
      assert.deepEqual(await tags('layout'), ['one', 'two']);
      assert.deepEqual(await tags('team/tools'), ['1.0']);
      const list = await request(url('/v2/static/app/tags/list'));
      assert.deepEqual(JSON.parse(list.body.toString()), { name: 'static/app', tags: ['oci', 'v2s2'] });
      assert.equal(list.headers['content-type'], 'application/json');
    });

    test('manifest HEAD and GET answer exact types, digests and the API version', async () => {
      const cases: Array<[string, string[], string]> = [
        ['app/manifests/v2s2', ['app', 'v2s2', 'manifest.json'], MediaType.dockerManifest],
        // skopeo writes OCI manifests without mediaType: typed from the content.
        ['app/manifests/oci', ['app', 'oci', 'manifest.json'], MediaType.ociManifest],
        ['multi/manifests/latest', ['multi', 'latest', 'manifest.json'], MediaType.ociIndex],
      ];
      for (const [uri, file, type] of cases) {
        const bytes = await readFile(path.join(tree.root, ...file));
        const accept = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifest, MediaType.dockerManifestList].join(', ');
        const head = await request(url(`/v2/static/${uri}`), { method: 'HEAD', headers: { accept } });
        assert.equal(head.status, 200, uri);
        assert.equal(head.headers['content-type'], type, uri);
        assert.equal(head.headers['docker-content-digest'], sha256(bytes), uri);
        assert.equal(head.headers['docker-distribution-api-version'], 'registry/2.0', uri);
        assert.equal(head.headers['content-length'], String(bytes.length), uri);
        assert.equal(head.body.length, 0);
        const get = await request(url(`/v2/static/${uri}`), { headers: { accept } });
        assert.deepEqual(get.body, bytes, uri);
        assert.equal(get.headers['content-type'], type, uri);
      }
      // Each instance manifest of the --all copy is served by its digest.
      const index = await manifestOf('multi', 'latest', 'manifest.json');
      for (const child of index.manifests) {
        const get = await request(url(`/v2/static/multi/manifests/${child.digest}`), { headers: { accept: MediaType.ociManifest } });
        assert.equal(get.status, 200);
        assert.equal(sha256(get.body), child.digest);
        assert.equal(get.headers['content-type'], MediaType.ociManifest);
      }
    });

    test('blobs: HEAD, GET and Range with digest headers', async () => {
      const manifest = await manifestOf('app', 'v2s2', 'manifest.json');
      const digest = manifest.config.digest;
      const bytes = await readFile(path.join(tree.root, 'app', 'v2s2', digest.slice(7)));
      const head = await request(url(`/v2/static/app/blobs/${digest}`), { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(bytes.length));
      assert.equal(head.headers['docker-content-digest'], digest);
      assert.equal(head.headers['docker-distribution-api-version'], 'registry/2.0');
      assert.equal(head.headers['content-type'], 'application/octet-stream');
      const part = await request(url(`/v2/static/app/blobs/${digest}`), { headers: { range: 'bytes=10-19' } });
      assert.equal(part.status, 206);
      assert.equal(part.headers['content-range'], `bytes 10-19/${bytes.length}`);
      assert.deepEqual(part.body, bytes.subarray(10, 20));
      const whole = await request(url(`/v2/static/app/blobs/${digest}`));
      assert.equal(sha256(whole.body), digest);
    });

    test('unknown names, tags and blobs are JSON errors with the API version', async () => {
      const check = async (uri: string, code: string) => {
        const res = await request(url(uri));
        assert.equal(res.status, 404, uri);
        assert.equal(registryError(res).code, code, uri);
        assert.match(String(res.headers['content-type']), /^application\/json/, uri);
        assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0', uri);
      };
      await check('/v2/static/nothing/manifests/latest', 'NAME_UNKNOWN');
      await check('/v2/static/nothing/tags/list', 'NAME_UNKNOWN');
      await check('/v2/static/app/manifests/missing', 'MANIFEST_UNKNOWN');
      await check(`/v2/static/app/manifests/sha256:${'0'.repeat(64)}`, 'MANIFEST_UNKNOWN');
      await check(`/v2/static/app/blobs/sha256:${'0'.repeat(64)}`, 'BLOB_UNKNOWN');
      // A blob of app's images is not served under a name whose images do not reference it.
      const layer = (await manifestOf('app', 'v2s2', 'manifest.json')).layers[0]!.digest;
      await check(`/v2/static/layout/blobs/${layer}`, 'BLOB_UNKNOWN');
      // Nor is a blob lying in an OCI layout that no tag reaches (umoci leaves replaced ones).
      const reachable = new Set<string>();
      const layoutDir = new OciLayout(path.join(tree.root, 'layout'));
      for (const tag of ['one', 'two']) {
        reachable.add(await layoutDir.manifestDigest(tag));
        const m = await layoutDir.manifest(tag);
        for (const d of [m.config, ...m.layers]) reachable.add(d.digest);
      }
      const orphans = (await readdir(path.join(tree.root, 'layout', 'blobs', 'sha256'))).map((hex) => `sha256:${hex}`).filter((d) => !reachable.has(d));
      assert.ok(orphans.length > 0, 'umoci left no unreferenced blob to check');
      await check(`/v2/static/layout/blobs/${orphans[0]}`, 'BLOB_UNKNOWN');
    });
  });
}

describe('static host only', () => {
  test('a client that takes no index gets the linux/amd64 image of a tag', async () => {
    const index = await manifestOf('multi', 'latest', 'manifest.json');
    const amd64 = index.manifests.find((m) => m.platform?.architecture === 'amd64')!;
    const res = await request(`${kontain.url}/v2/static/multi/manifests/latest`, { headers: { accept: MediaType.ociManifest } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-content-digest'], amd64.digest);
    assert.equal(sha256(res.body), amd64.digest);
  });

  test('changes on disk are seen without a restart', async () => {
    const tags = async () => JSON.parse((await request(`${kontain.url}/v2/static/app/tags/list`)).body.toString()) as { tags: string[] };
    assert.deepEqual((await tags()).tags, ['oci', 'v2s2']);
    await cp(path.join(tree.root, 'app', 'oci'), path.join(tree.root, 'app', 'x-added'), { recursive: true });
    try {
      assert.deepEqual((await tags()).tags, ['oci', 'v2s2', 'x-added']);
      const res = await request(`${kontain.url}/v2/static/app/manifests/x-added`, { method: 'HEAD' });
      assert.equal(res.headers['docker-content-digest'], await fileDigest('app', 'oci', 'manifest.json'));
      // A manifest rewritten in place is served with its new bytes, though the same old
      // bytes are still oci's (read first, so the kept manifest came from oci's file).
      const rewritten = Buffer.from(JSON.stringify(await manifestOf('app', 'x-added', 'manifest.json'), null, 2));
      await writeFile(path.join(tree.root, 'app', 'x-added', 'manifest.json'), rewritten);
      const after = await request(`${kontain.url}/v2/static/app/manifests/x-added`);
      assert.equal(after.headers['docker-content-digest'], sha256(rewritten));
    } finally {
      await rm(path.join(tree.root, 'app', 'x-added'), { recursive: true });
    }
    assert.deepEqual((await tags()).tags, ['oci', 'v2s2']);
    assert.equal((await request(`${kontain.url}/v2/static/app/manifests/x-added`)).status, 404);
  });

  test('a kept manifest changed on disk is seen soon after, without a restart', { timeout: 30_000 }, async () => {
    const file = path.join(tree.root, 'app', 'x-settled', 'manifest.json');
    const url = `${kontain.url}/v2/static/app/manifests/x-settled`;
    await cp(path.join(tree.root, 'app', 'oci'), path.join(tree.root, 'app', 'x-settled'), { recursive: true });
    try {
      // Files changed in the last two seconds are read again on every request; once older,
      // a kept manifest is vouched for by a stat taken at most once a second (RECHECK_MS).
      await delay(2100);
      const before = await fileDigest('app', 'x-settled', 'manifest.json');
      // The first reads the repository again (a new tag); the second is vouched for by a stat.
      for (let i = 0; i < 2; i++) assert.equal((await request(url)).headers['docker-content-digest'], before);
      const rewritten = Buffer.from(JSON.stringify(await manifestOf('app', 'x-settled', 'manifest.json'), null, 1));
      assert.notEqual(sha256(rewritten), before);
      await writeFile(file, rewritten);
      for (;;) {
        const res = await request(url);
        const digest = res.headers['docker-content-digest'];
        if (digest === sha256(rewritten)) {
          assert.equal(sha256(res.body), digest);
          break;
        }
        assert.equal(digest, before, 'until the change is seen, the kept manifest is served whole');
        assert.equal(sha256(res.body), before);
        await delay(50);
      }
    } finally {
      await rm(path.join(tree.root, 'app', 'x-settled'), { recursive: true });
    }
  });

  test('KONTAIN_STATIC_PREFIX names every image under the prefix, with host routing too', async () => {
    const prefixed = await startKontain({ KONTAIN_STATIC_ROOT: tree.root, KONTAIN_STATIC_PREFIX: 'mirror/acme', KONTAIN_DOMAIN: 'kontain.test' });
    try {
      const digest = await fileDigest('team', 'tools', '1.0', 'manifest.json');
      const byHost = await request(`${prefixed.url}/v2/mirror/acme/team/tools/manifests/1.0`, { method: 'HEAD', headers: { host: 'static.kontain.test' } });
      assert.equal(byHost.status, 200);
      assert.equal(byHost.headers['docker-content-digest'], digest);
      const byPath = await request(`${prefixed.url}/v2/static/mirror/acme/team/tools/tags/list`);
      assert.deepEqual(JSON.parse(byPath.body.toString()), { name: 'static/mirror/acme/team/tools', tags: ['1.0'] });
      const unprefixed = await request(`${prefixed.url}/v2/static/team/tools/manifests/1.0`);
      assert.equal(registryError(unprefixed).code, 'NAME_UNKNOWN');
    } finally {
      await prefixed.stop();
    }
  });
});

describe('kontain export nginx', () => {
  test('refuses bad arguments with a usage message', async () => {
    const fails = async (args: string[], message: RegExp) => {
      await assert.rejects(exec(process.execPath, [entry, 'export', ...args]), message);
    };
    await fails(['nginx', path.join(work, 'no-such-dir')], /not a directory/);
    await fails(['nginx', '--name-prefix', 'Bad Prefix', tree.root], /not a repository name/);
  });

  test('has one location per instance manifest of an index', async () => {
    const { stdout } = await exec(process.execPath, [entry, 'export', 'nginx', tree.root]);
    const index = await manifestOf('multi', 'latest', 'manifest.json');
    for (const child of index.manifests) {
      assert.equal(stdout.split(`location = /v2/multi/manifests/${child.digest} {`).length, 2);
    }
  });
});
