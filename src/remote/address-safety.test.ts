import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { AddressPolicy, classifyAddress, isAllowlisted, parseInsecureRegistries, splitHostPort, UnsafeAddressError, type AddressClass, type LookupAll } from './address-safety.js';
import { RegistryClient } from './client.js';
import { UpstreamError } from './errors.js';

describe('address classification (pure, no traffic)', () => {
  const table: Array<[string, AddressClass]> = [
    ['8.8.8.8', 'public'],
    ['1.1.1.1', 'public'],
    ['172.15.255.255', 'public'],
    ['172.32.0.0', 'public'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['127.0.0.1', 'loopback'],
    ['127.0.0.2', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['169.254.0.1', 'link-local'],
    ['169.254.169.254', 'metadata'],
    ['224.0.0.1', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf::1', 'link-local'],
    ['fec0::1', 'private'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::ffff:10.1.2.3', 'private'],
    ['::ffff:8.8.8.8', 'public'],
    ['64:ff9b::10.0.0.1', 'private'],
    ['64:ff9b::8.8.8.8', 'public'],
    ['::127.0.0.1', 'reserved'],
    ['2002:7f00:1::1', 'loopback'],
    ['2002:808:808::1', 'public'],
    ['2001:4860:4860::8888', 'public'],
    ['2606:4700::1111', 'public'],
  ];
  for (const [ip, expected] of table) {
    test(`${ip} is ${expected}`, () => assert.equal(classifyAddress(ip), expected));
  }
  test('non-addresses throw', () => {
    assert.throws(() => classifyAddress('localhost'), /not an IP address/);
    assert.throws(() => classifyAddress('1.2.3'), /not an IP address/);
  });
});

describe('host:port and allowlist parsing', () => {
  test('splitHostPort', () => {
    assert.deepEqual(splitHostPort('Example.COM.'), { hostname: 'example.com' });
    assert.deepEqual(splitHostPort('127.0.0.1:5000'), { hostname: '127.0.0.1', port: 5000 });
    assert.deepEqual(splitHostPort('[::1]:5000'), { hostname: '::1', port: 5000 });
    assert.deepEqual(splitHostPort('[::1]'), { hostname: '::1' });
    assert.deepEqual(splitHostPort('::1'), { hostname: '::1' });
  });
  test('KONTAIN_INSECURE_REGISTRIES entries: host:port exact, bare host any port', () => {
    const list = parseInsecureRegistries(' 127.0.0.1:5000, ,registry.local,[::1]:6000 ');
    assert.deepEqual(list, ['127.0.0.1:5000', 'registry.local', '[::1]:6000']);
    assert.equal(isAllowlisted(list, '127.0.0.1', 5000), true);
    assert.equal(isAllowlisted(list, '127.0.0.1', 5001), false);
    assert.equal(isAllowlisted(list, 'REGISTRY.local', 443), true);
    assert.equal(isAllowlisted(list, '::1', 6000), true);
    assert.equal(isAllowlisted(list, '::1', 443), false);
    assert.deepEqual(parseInsecureRegistries(undefined), []);
  });
});

describe('AddressPolicy (fake DNS, no connections)', () => {
  const dns: Record<string, string[]> = {
    'public.example': ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'],
    'mixed.example': ['93.184.215.14', '10.0.0.5'],
    'rebind.example': ['192.168.0.10'],
    'v6local.example': ['fd00::1'],
  };
  const lookups: string[] = [];
  const lookup: LookupAll = async (host) => {
    lookups.push(host);
    const answers = dns[host];
    if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  const policy = new AddressPolicy({ insecureRegistries: ['rebind.example:5000', 'localhost'], lookup });

  test('a public name resolves to its first address, which is then used', async () => {
    assert.deepEqual(await policy.resolve('r', 'public.example', 443), { address: '93.184.215.14', family: 4 });
  });

  test('every address must be public', async () => {
    await assert.rejects(policy.resolve('mixed.example', 'mixed.example', 443), (err: unknown) => {
      assert.ok(err instanceof UnsafeAddressError && err instanceof UpstreamError);
      assert.equal(err.code, 'ADDRESS_REFUSED');
      assert.equal(err.status, 0);
      assert.match(err.message, /mixed\.example:443.*resolves to 10\.0\.0\.5, a private network address/);
      assert.match(err.message, /KONTAIN_INSECURE_REGISTRIES/);
      return true;
    });
    await assert.rejects(policy.resolve('r', 'v6local.example', 443), /fd00::1, a private network address/);
  });

  test('literals are classified without DNS', async () => {
    lookups.length = 0;
    await assert.rejects(policy.resolve('r', '127.0.0.2', 5000), /127\.0\.0\.2 is a loopback address/);
    await assert.rejects(policy.resolve('r', '169.254.169.254', 80), /cloud metadata server address/);
    await assert.rejects(policy.resolve('r', '::1', 5000), /\[::1\]:5000.*loopback/);
    await assert.rejects(policy.resolve('r', '0.0.0.0', 80), /unspecified/);
    assert.deepEqual(lookups, []);
  });

  test('the metadata server name is refused before any lookup', async () => {
    lookups.length = 0;
    await assert.rejects(policy.resolve('r', 'metadata.google.internal', 80), /cloud metadata server/);
    await assert.rejects(policy.resolve('r', 'METADATA.google.internal.', 80), /cloud metadata server/);
    assert.deepEqual(lookups, []);
  });

  test('allowlisted host:port may be private, another port may not', async () => {
    assert.deepEqual(await policy.resolve('r', 'rebind.example', 5000), { address: '192.168.0.10', family: 4 });
    await assert.rejects(policy.resolve('r', 'rebind.example', 5001), /private network address/);
    assert.equal(policy.isInsecure('rebind.example', 5000), true);
    assert.equal(policy.isInsecure('public.example', 443), false);
  });

  test('a name that does not resolve is UNRESOLVABLE, not refused', async () => {
    await assert.rejects(policy.resolve('r', 'nowhere.example', 443), (err: unknown) => err instanceof UpstreamError && err.code === 'UNRESOLVABLE');
  });
});

describe('the client refuses loopback registries that are not allowlisted, before connecting', () => {
  let connections = 0;
  const servers: Server[] = [];
  let port2 = 0;
  let port1 = 0;
  const listen = (host: string) =>
    new Promise<number>((resolve, reject) => {
      const server = createServer((socket) => {
        connections++;
        socket.destroy();
      });
      servers.push(server);
      server.once('error', reject);
      server.listen(0, host, () => resolve((server.address() as { port: number }).port));
    });
  before(async () => {
    port2 = await listen('127.0.0.2');
    port1 = await listen('127.0.0.1');
  });
  after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

  const client = new RegistryClient({ insecureRegistries: ['127.0.0.1:1'], retries: 0 });
  after(() => client.close());

  for (const host of [() => `127.0.0.2:${port2}`, () => `localhost:${port1}`, () => `[::1]:${port1}`]) {
    test(`${host().replace(/\d+$/, 'PORT')}`, async () => {
      for (const call of [
        () => client.resolve(`${host()}/some/repo:latest`),
        () => client.getManifest(`${host()}/some/repo:latest`),
        () => client.blob({ registry: host(), repository: 'some/repo' }, 'sha256:' + '0'.repeat(64)),
        () => client.tags({ registry: host(), repository: 'some/repo' }),
      ]) {
        await assert.rejects(call(), (err: unknown) => {
          assert.ok(err instanceof UnsafeAddressError, String(err));
          assert.equal(err.code, 'ADDRESS_REFUSED');
          assert.equal(err.registry, host());
          assert.match(err.message, /refusing to connect to .* loopback address; to allow it, add ".*" to KONTAIN_INSECURE_REGISTRIES/);
          return true;
        });
      }
      assert.equal(connections, 0);
    });
  }
});
