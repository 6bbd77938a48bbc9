import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { withTempDir } from '../../test/support/temp-dir.js';
import { proxyURL, writeGoModule } from '../../test/support/go-module-proxy.js';
import { GoModuleProxy, ModuleNotFound, ModuleProxyError } from './module-proxy.js';

const TIME = '2024-01-02T03:04:05Z';

/** A proxy directory holding `versions` of `module` (go.mod only), as a file:// URL. */
async function proxyDir(dir: string, module: string, versions: string[]): Promise<string> {
  for (const version of versions) await writeGoModule(dir, module, version, { 'go.mod': `module ${module}\n` }, { time: TIME });
  return proxyURL(dir);
}

async function httpProxy(handler: (url: string) => { status: number; body?: string }): Promise<{ url: string; server: Server; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? '');
    const { status, body } = handler(req.url ?? '');
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(body ?? '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, seen };
}

test('latest is the highest release, else the highest pre-release, by semver not by text', () =>
  withTempDir('ko-proxy-', async (dir) => {
    const url = await proxyDir(dir, 'example.com/m', ['v1.2.0', 'v1.10.0', 'v1.9.9', 'v2.0.0-rc.1']);
    assert.equal((await new GoModuleProxy([url]).resolve('example.com/m', 'latest'))?.version, 'v1.10.0');
    const pre = await proxyDir(path.join(dir, 'pre'), 'example.com/p', ['v0.1.0-alpha', 'v0.1.0-beta']);
    assert.equal((await new GoModuleProxy([pre]).resolve('example.com/p', 'latest'))?.version, 'v0.1.0-beta');
  }));

test('the longest module path that has the version wins; upper case travels escaped', () =>
  withTempDir('ko-proxy-', async (dir) => {
    await proxyDir(dir, 'example.com/Big', ['v1.0.0']);
    const url = await proxyDir(dir, 'example.com/Big/sub', ['v2.0.0']);
    const proxy = new GoModuleProxy([url]);
    assert.deepEqual(await proxy.findModule('example.com/Big/sub/cmd/x', 'v2.0.0'), { module: 'example.com/Big/sub', version: 'v2.0.0', time: TIME });
    assert.deepEqual(await proxy.findModule('example.com/Big/cmd/y', 'v1.0.0'), { module: 'example.com/Big', version: 'v1.0.0', time: TIME });
    await assert.rejects(proxy.findModule('example.com/other/x', 'latest'), (err: Error) => err instanceof ModuleNotFound && /no module provides example\.com\/other\/x/.test(err.message));
  }));

test('404 and 410 fall through to the next proxy; other statuses are errors naming the proxy', () =>
  withTempDir('ko-proxy-', async (dir) => {
    const file = await proxyDir(dir, 'example.com/m', ['v1.0.0']);
    const gone = await httpProxy(() => ({ status: 410, body: 'gone' }));
    const broken = await httpProxy(() => ({ status: 500, body: 'proxy on fire' }));
    try {
      const found = await new GoModuleProxy([gone.url, file]).resolve('example.com/m', 'v1.0.0');
      assert.equal(found?.version, 'v1.0.0');
      assert.deepEqual(gone.seen, ['/example.com/m/@v/v1.0.0.info']);
      await assert.rejects(new GoModuleProxy([broken.url, file]).resolve('example.com/m', 'v1.0.0'), (err: Error) => err instanceof ModuleProxyError && err.message.includes(broken.url) && /answered 500 .*: proxy on fire/.test(err.message));
    } finally {
      gone.server.close();
      broken.server.close();
    }
  }));
