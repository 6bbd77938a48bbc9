import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AddressPolicy, type LookupAll } from './address-safety.js';
import { UpstreamError } from './errors.js';
import { Transport, readBody } from './transport.js';
import { exec } from '../../test/support/tools.js';

let dir: string;
let server: Server;
let port = 0;
let cert: Buffer;
const seen: Array<{ servername: string | false; host?: string }> = [];
const lookups: string[] = [];

// Names that do not resolve in real DNS: a request only succeeds if the pinned address is used.
const lookup: LookupAll = async (host) => {
  lookups.push(host);
  return [{ address: '127.0.0.1', family: 4 }];
};

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kontain-tls-'));
  const key = path.join(dir, 'key.pem');
  const crt = path.join(dir, 'cert.pem');
  await exec('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '1', '-subj', '/CN=registry.test', '-addext', 'subjectAltName=DNS:registry.test']);
  cert = await readFile(crt);
  server = createServer({ key: await readFile(key), cert }, (req, res) => {
    seen.push({ servername: (req.socket as unknown as { servername: string | false }).servername, host: req.headers.host });
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

function transport(allow: string[]): Transport {
  return new Transport({ policy: new AddressPolicy({ insecureRegistries: allow, lookup }), userAgent: 't', connectMs: 2000, stallMs: 2000, ca: [cert] });
}

test('HTTPS goes to the checked address with the name in SNI and Host', async () => {
  const t = transport([`registry.test:${port}`]);
  try {
    lookups.length = 0;
    const res = await t.send({ registry: 'registry.test', method: 'GET', url: new URL(`https://registry.test:${port}/v2/`) });
    assert.equal(res.status, 200);
    assert.equal((await readBody(res.body, 100, 'r', 'x')).toString(), '{}');
    assert.deepEqual(seen.at(-1), { servername: 'registry.test', host: `registry.test:${port}` });
    assert.deepEqual(lookups, ['registry.test']);
  } finally {
    t.close();
  }
});

test('the certificate is still checked against the name', async () => {
  const t = transport([`other.test:${port}`]);
  try {
    await assert.rejects(
      t.send({ registry: 'other.test', method: 'GET', url: new URL(`https://other.test:${port}/v2/`) }),
      (err: unknown) => err instanceof UpstreamError && err.code === 'UNREACHABLE' && /other\.test/.test(err.message) && /altnames|does not match/i.test(err.message),
    );
  } finally {
    t.close();
  }
});

test('plain HTTP and other schemes only for allowlisted hosts, refused before any lookup', async () => {
  const t = transport([]);
  try {
    lookups.length = 0;
    await assert.rejects(t.send({ registry: 'r', method: 'GET', url: new URL('http://public.example/v2/') }), /refusing plain HTTP to public\.example/);
    await assert.rejects(t.send({ registry: 'r', method: 'GET', url: new URL('file:///etc/passwd') }), /refusing file: URL/);
    assert.deepEqual(lookups, []);
  } finally {
    t.close();
  }
});

test('a connection that does not complete (TLS handshake never answered) times out at connectMs', async () => {
  const held: Socket[] = [];
  const silent = createTcpServer((socket) => held.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const silentPort = (silent.address() as AddressInfo).port;
  const t = new Transport({ policy: new AddressPolicy({ insecureRegistries: [`registry.test:${silentPort}`], lookup }), userAgent: 't', connectMs: 300, stallMs: 5000 });
  try {
    const started = Date.now();
    await assert.rejects(
      t.send({ registry: 'registry.test', method: 'GET', url: new URL(`https://registry.test:${silentPort}/v2/`) }),
      (err: unknown) => err instanceof UpstreamError && err.code === 'UNREACHABLE' && /could not connect to upstream registry\.test .*within 300 ms/.test(err.message),
    );
    assert.ok(Date.now() - started < 2000);
  } finally {
    t.close();
    for (const s of held) s.destroy();
    await new Promise((r) => silent.close(r));
  }
});
