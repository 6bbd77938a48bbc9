import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Authenticator, parseTokenResponse, parseWwwAuthenticate, type TokenFetch } from './auth.js';
import { DockerConfigCredentials, type Credentials } from './credentials.js';
import { UpstreamError } from './errors.js';

describe('WWW-Authenticate', () => {
  test('Docker Hub bearer challenge', () => {
    assert.deepEqual(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'), [
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io' } },
    ]);
  });

  test('quoted values with commas, spaces, escapes; several scopes; error', () => {
    const [c] = parseWwwAuthenticate(
      'Bearer realm="https://auth.example/token?a=1,b=2", service="my registry", scope="repository:a/b:pull repository:host:5000/c:pull,push",error="insufficient_scope", note="say \\"hi\\""',
    );
    assert.deepEqual(c, {
      scheme: 'bearer',
      params: {
        realm: 'https://auth.example/token?a=1,b=2',
        service: 'my registry',
        scope: 'repository:a/b:pull repository:host:5000/c:pull,push',
        error: 'insufficient_scope',
        note: 'say "hi"',
      },
    });
  });

  test('Basic, case-insensitive names, unquoted values', () => {
    assert.deepEqual(parseWwwAuthenticate('basic Realm=registry'), [{ scheme: 'basic', params: { realm: 'registry' } }]);
    assert.deepEqual(parseWwwAuthenticate('Bearer realm=https://x.example/token,service=x'), [
      { scheme: 'bearer', params: { realm: 'https://x.example/token', service: 'x' } },
    ]);
  });

  test('several challenges in one line and over several lines', () => {
    const both = parseWwwAuthenticate('Basic realm="a, b", Bearer realm="https://t/x",service="s"');
    assert.deepEqual(both.map((c) => c.scheme), ['basic', 'bearer']);
    assert.equal(both[0]!.params.realm, 'a, b');
    assert.equal(both[1]!.params.service, 's');
    assert.deepEqual(parseWwwAuthenticate(['Basic realm="r"', 'Bearer realm="t"']).map((c) => c.scheme), ['basic', 'bearer']);
  });

  test('nothing or garbage gives no challenge that could be used', () => {
    assert.deepEqual(parseWwwAuthenticate(undefined), []);
    assert.deepEqual(parseWwwAuthenticate(''), []);
    assert.deepEqual(parseWwwAuthenticate('realm="x"'), []);
    assert.equal(parseWwwAuthenticate('Bearer ,,, ="x"')[0]!.params.realm, undefined);
  });
});

describe('token responses', () => {
  const now = 1_000_000_000_000;
  test('token, else access_token; expires_in defaults to and is clamped at 60 s', () => {
    const a = parseTokenResponse('r', Buffer.from(JSON.stringify({ token: 't1', expires_in: 300 })), now, 10_000);
    assert.deepEqual(a, { token: 't1', usableUntil: now + 290_000 });
    const b = parseTokenResponse('r', Buffer.from(JSON.stringify({ access_token: 't2' })), now, 10_000);
    assert.deepEqual(b, { token: 't2', usableUntil: now + 50_000 });
    const c = parseTokenResponse('r', Buffer.from(JSON.stringify({ token: 't3', expires_in: 5 })), now, 10_000);
    assert.equal(c.usableUntil, now + 50_000);
  });

  test('an issued_at earlier than the request counts from issued_at', () => {
    const t = parseTokenResponse('r', Buffer.from(JSON.stringify({ token: 't', expires_in: 120, issued_at: new Date(now - 30_000).toISOString() })), now, 0);
    assert.equal(t.usableUntil, now + 90_000);
  });

  test('no token or no JSON is an UpstreamError', () => {
    assert.throws(() => parseTokenResponse('r', Buffer.from('{}'), now, 0), UpstreamError);
    assert.throws(() => parseTokenResponse('r', Buffer.from('<html>'), now, 0), /not JSON/);
  });
});

describe('Authenticator', () => {
  function setup(credentials?: Credentials) {
    let clock = 1_000_000;
    const calls: URL[] = [];
    const fetch: TokenFetch = async (_registry, url, headers) => {
      calls.push(url);
      const scopes = url.searchParams.getAll('scope').join('+');
      return { status: 200, body: Buffer.from(JSON.stringify({ token: `tok(${scopes})${headers.Authorization ? '+user' : ''}`, expires_in: 60 })) };
    };
    const auth = new Authenticator({ credentials: async () => credentials, fetch, now: () => clock, skewMs: 10_000 });
    return { auth, calls, advance: (ms: number) => (clock += ms) };
  }
  const challenge = 'Bearer realm="https://auth.example/token",service="reg"';

  test('learns the challenge, then authenticates up front from the cache until near expiry', async () => {
    const { auth, calls, advance } = setup();
    assert.equal(await auth.authorization('reg', ['repository:a:pull']), undefined);
    assert.equal(await auth.answer('reg', challenge, ['repository:a:pull']), 'Bearer tok(repository:a:pull)');
    assert.equal(calls[0]!.searchParams.get('service'), 'reg');
    assert.equal(await auth.authorization('reg', ['repository:a:pull']), 'Bearer tok(repository:a:pull)');
    assert.equal(calls.length, 1);
    assert.equal(await auth.authorization('reg', ['repository:b:pull']), undefined, 'another scope learns its own challenge');
    await auth.answer('reg', challenge, ['repository:b:pull']);
    assert.equal(calls.length, 2, 'another scope is another token');
    advance(49_000);
    await auth.authorization('reg', ['repository:a:pull']);
    assert.equal(calls.length, 2);
    advance(2_000);
    await auth.authorization('reg', ['repository:a:pull']);
    assert.equal(calls.length, 3, 'refetched inside the skew window');
  });

  test('insufficient_scope asks for the union of scopes; a refused token is not reused', async () => {
    const { auth, calls } = setup();
    const first = await auth.answer('reg', challenge, ['repository:a:pull']);
    const second = await auth.answer('reg', `${challenge},scope="repository:other:pull",error="insufficient_scope"`, ['repository:a:pull'], first);
    assert.equal(second, 'Bearer tok(repository:a:pull+repository:other:pull)');
    const again = await auth.answer('reg', challenge, ['repository:a:pull'], first);
    assert.equal(again, 'Bearer tok(repository:a:pull)');
    assert.equal(calls.length, 3, 'the refused token was dropped from the cache');
  });

  test('credentials go to the token server as Basic', async () => {
    const { auth } = setup({ username: 'u', password: 'p' });
    assert.equal(await auth.answer('reg', challenge, ['repository:a:pull']), 'Bearer tok(repository:a:pull)+user');
  });

  test('Basic challenge: credentials if there are any, and not the same ones twice', async () => {
    const anonymous = setup();
    assert.equal(await anonymous.auth.answer('reg', 'Basic realm="x"', []), undefined);
    const withCreds = setup({ username: 'u', password: 'p:w' });
    const header = await withCreds.auth.answer('reg', 'Basic realm="x"', []);
    assert.equal(header, `Basic ${Buffer.from('u:p:w').toString('base64')}`);
    assert.equal(await withCreds.auth.authorization('reg', []), header);
    assert.equal(await withCreds.auth.answer('reg', 'Basic realm="x"', [], header), undefined);
  });

  test('concurrent requests for one token fetch it once', async () => {
    const { auth, calls } = setup();
    const more = await Promise.all([1, 2, 3].map(() => auth.answer('reg', challenge, ['repository:y:pull'])));
    assert.equal(new Set(more).size, 1);
    assert.equal(calls.length, 1);
  });

  test('a realm that fails for one repository is not used for another, and is learned again', async () => {
    let clock = 1_000_000;
    const refused = new Set(['https://evil.example/token']);
    const calls: string[] = [];
    const fetch: TokenFetch = async (registry, url) => {
      calls.push(url.origin);
      if (refused.has(`${url.origin}${url.pathname}`)) throw new UpstreamError({ registry, status: 0, code: 'ADDRESS_REFUSED', message: `refusing ${url.origin}` });
      return { status: 200, body: Buffer.from(JSON.stringify({ token: `tok-${url.host}`, expires_in: 3600 })) };
    };
    const auth = new Authenticator({ credentials: async () => undefined, fetch, now: () => clock, challengeTTLms: 600_000 });
    const evil = 'Bearer realm="https://evil.example/token"';
    await assert.rejects(auth.answer('reg', evil, ['repository:attacker:pull']), /refusing/);
    // The refused realm was never remembered: other repositories (and this one) ask afresh.
    assert.equal(await auth.authorization('reg', ['repository:attacker:pull']), undefined);
    assert.equal(await auth.authorization('reg', ['repository:real:pull']), undefined);
    assert.equal(await auth.answer('reg', challenge, ['repository:real:pull']), 'Bearer tok-auth.example');
    assert.equal(await auth.authorization('reg', ['repository:real:pull']), 'Bearer tok-auth.example');

    // A remembered realm that stops working is forgotten, so the next 401 teaches anew.
    refused.add('https://auth.example/token');
    clock += 3600_000; // the token expired; fetching a new one fails
    assert.equal(await auth.authorization('reg', ['repository:real:pull']), undefined);
    refused.delete('https://auth.example/token');
    assert.equal(await auth.authorization('reg', ['repository:real:pull']), undefined, 'forgotten after the failure');
    assert.equal(await auth.answer('reg', challenge, ['repository:real:pull']), 'Bearer tok-auth.example');

    // And a challenge that worked is used up front only for a while.
    clock += 600_001;
    assert.equal(await auth.authorization('reg', ['repository:real:pull']), undefined, 'expired');
  });
});

describe('docker config.json credentials', () => {
  let dir: string;
  after(() => rm(dir, { recursive: true, force: true }));

  test('auth field, username/password fields, Docker Hub aliases, missing file', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kontain-auth-'));
    const file = path.join(dir, 'config.json');
    await writeFile(
      file,
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: Buffer.from('hub:pa:ss').toString('base64') },
          '127.0.0.1:5000': { username: 'local', password: 'pw' },
          'https://ghcr.io': { auth: Buffer.from('gh:tok').toString('base64') },
          'empty.example': {},
        },
        credsStore: 'desktop',
      }),
    );
    const creds = new DockerConfigCredentials(file);
    assert.deepEqual(await creds.get('docker.io'), { username: 'hub', password: 'pa:ss' });
    assert.deepEqual(await creds.get('127.0.0.1:5000'), { username: 'local', password: 'pw' });
    assert.deepEqual(await creds.get('ghcr.io'), { username: 'gh', password: 'tok' });
    assert.equal(await creds.get('empty.example'), undefined);
    assert.equal(await creds.get('quay.io'), undefined);
    assert.equal(await new DockerConfigCredentials(path.join(dir, 'absent.json')).get('docker.io'), undefined);
    assert.equal(await new DockerConfigCredentials(undefined).get('docker.io'), undefined);

    await writeFile(path.join(dir, 'bad.json'), '{');
    await assert.rejects(new DockerConfigCredentials(path.join(dir, 'bad.json')).get('x'), /not valid JSON/);
  });
});
