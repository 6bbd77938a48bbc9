import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startKontain, type TestServer } from './support/kontain.js';
import { startUpstreamProxy, type UpstreamProxy } from './support/upstream-proxy.js';
import { request } from './support/http.js';

/** An upstream whose tags/list ignores n and last and does not sort: kontain pages it itself. */
const UPSTREAM_TAGS = ['v2', 'latest', 'v10', 'a', 'v1'];

let upstream: UpstreamProxy;
let server: TestServer;
before(async () => {
  upstream = await startUpstreamProxy();
  upstream.intercept((req, res) => {
    const json = (body: unknown) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/v2/' || req.url === '/v2') json({});
    else if (req.url?.startsWith('/v2/lib/app/tags/list')) json({ name: 'lib/app', tags: UPSTREAM_TAGS });
    else res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}');
    return true;
  });
  server = await startKontain({ KONTAIN_INSECURE_REGISTRIES: upstream.host });
});
after(async () => {
  await server.stop();
  await upstream.stop();
});

async function tags(query: string): Promise<{ tags: string[]; link?: string }> {
  const name = `mirror/${upstream.host.replace(':', '-')}/lib/app`;
  const res = await request(`${server.url}/v2/${name}/tags/list${query}`);
  assert.equal(res.status, 200, res.body.toString());
  const body = JSON.parse(res.body.toString()) as { name: string; tags: string[] };
  assert.equal(body.name, name);
  return { tags: body.tags, ...(res.headers.link ? { link: res.headers.link as string } : {}) };
}

test('tags/list is sorted lexically though the upstream does not sort', async () => {
  assert.deepEqual(await tags(''), { tags: ['a', 'latest', 'v1', 'v10', 'v2'] });
});

test('tags/list applies n and last though the upstream ignores them, with a Link to the next page', async () => {
  const first = await tags('?n=2');
  assert.deepEqual(first.tags, ['a', 'latest']);
  const name = `mirror/${upstream.host.replace(':', '-')}/lib/app`;
  assert.equal(first.link, `</v2/${name}/tags/list?n=2&last=latest>; rel="next"`);
  const second = await tags('?n=2&last=latest');
  assert.deepEqual(second.tags, ['v1', 'v10']);
  const third = await tags('?n=2&last=v10');
  assert.deepEqual(third, { tags: ['v2'] });
  assert.deepEqual(await tags('?n=0'), { tags: [] });
});
