import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from './config.js';

test('KONTAIN_INSECURE_REGISTRIES takes host or host:port entries and refuses the rest, saying what is expected', () => {
  const ok = loadConfig({ KONTAIN_INSECURE_REGISTRIES: ' 127.0.0.1:5000, Registry.Local ,[::1]:5000,::1,10.0.0.7,my-registry.internal:443' });
  assert.deepEqual(ok.insecureRegistries, ['127.0.0.1:5000', 'registry.local', '[::1]:5000', '::1', '10.0.0.7', 'my-registry.internal:443']);
  for (const entry of ['http://127.0.0.1:5000', '127.0.0.1:5000/v2', '10.0.0.0/8', 'user@host', 'host:99999', 'host:port', 'a b', 'host:', '[::1']) {
    assert.throws(
      () => loadConfig({ KONTAIN_INSECURE_REGISTRIES: entry }),
      (err: unknown) => err instanceof ConfigError && err.message.includes(JSON.stringify(entry)) && /expected host or host:port/.test(err.message),
      entry,
    );
  }
  assert.throws(() => loadConfig({ KONTAIN_INSECURE_REGISTRIES: '10.0.0.0/8' }), /CIDR ranges are not supported/);
});

test('connection limits: defaults, Cloud Run turns the per-client cap off, bad values refused', () => {
  const plain = loadConfig({});
  assert.equal(plain.maxConnectionsPerClient, 128);
  assert.equal(plain.headersTimeoutSeconds, 20);
  assert.equal(loadConfig({ K_SERVICE: 'kontain' }).maxConnectionsPerClient, 0);
  assert.equal(loadConfig({ K_SERVICE: 'kontain', KONTAIN_MAX_CONNECTIONS_PER_CLIENT: '50' }).maxConnectionsPerClient, 50);
  assert.throws(() => loadConfig({ KONTAIN_MAX_CONNECTIONS_PER_CLIENT: '-1' }), /KONTAIN_MAX_CONNECTIONS_PER_CLIENT/);
  assert.throws(() => loadConfig({ KONTAIN_HEADERS_TIMEOUT: '0' }), /KONTAIN_HEADERS_TIMEOUT/);
});
