import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConversionError, dockerToOciManifest, goImageConfig, goRuntimeConfig } from './oci-conversion.js';
import { sha256Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';

const encode = (config: unknown) => goImageConfig(Buffer.from(JSON.stringify(config))).toString();

test('a config is re-encoded in the OCI struct order, empty fields left out, Docker-only fields dropped', () => {
  const docker = {
    architecture: 'amd64',
    config: { Hostname: 'x', Env: ['A=1'], Cmd: null, Labels: { b: '2', a: '1' }, ExposedPorts: { '80/tcp': {} }, WorkingDir: '' },
    container_config: { Cmd: ['ignored'] },
    created: '2024-01-02T03:04:05.120000000Z',
    docker_version: '24',
    history: [{ created_by: 'RUN x', empty_layer: true }, { created: '2024-01-02T03:04:05+00:00' }],
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: ['sha256:' + 'a'.repeat(64)] },
  };
  assert.equal(
    encode(docker),
    '{"created":"2024-01-02T03:04:05.12Z","architecture":"amd64","os":"linux","config":{"ExposedPorts":{"80/tcp":{}},"Env":["A=1"],"Labels":{"a":"1","b":"2"}},' +
      `"rootfs":{"type":"layers","diff_ids":["sha256:${'a'.repeat(64)}"]},"history":[{"created_by":"RUN x","empty_layer":true},{"created":"2024-01-02T03:04:05Z"}]}`,
  );
});

test('Go decoding and encoding details: case-insensitive keys, HTML escapes, null diff_ids, offsets kept', () => {
  assert.equal(encode({ Architecture: 'arm64', OS: 'linux', config: { cmd: ['<&>'] }, created: '2024-01-02T03:04:05.5+02:00' }), '{"created":"2024-01-02T03:04:05.5+02:00","architecture":"arm64","os":"linux","config":{"Cmd":["\\u003c\\u0026\\u003e"]},"rootfs":{"type":"","diff_ids":null}}');
  assert.equal(goRuntimeConfig(Buffer.from('{"config":{"User":"1000","StopSignal":"SIGTERM"}}')).toString(), '{"User":"1000","StopSignal":"SIGTERM"}');
  assert.throws(() => encode({ architecture: 1 }), ConversionError);
  assert.throws(() => encode({ created: 'yesterday' }), ConversionError);
});

test('a Docker manifest becomes an OCI manifest naming the re-encoded config', () => {
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}');
  const layer = { mediaType: MediaType.dockerLayerGzip, digest: 'sha256:' + 'b'.repeat(64), size: 10 };
  const converted = dockerToOciManifest({ schemaVersion: 2, mediaType: MediaType.dockerManifest, config: { mediaType: MediaType.dockerConfig, digest: sha256Digest(config), size: config.length }, layers: [layer] }, config);
  assert.equal(converted.config.toString(), '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}');
  assert.equal(
    converted.bytes.toString(),
    `{"schemaVersion":2,"mediaType":"${MediaType.ociManifest}","config":{"mediaType":"${MediaType.ociConfig}","digest":"${sha256Digest(converted.config)}","size":${converted.config.length}},"layers":[{"mediaType":"${MediaType.ociLayerGzip}","digest":"${layer.digest}","size":10}]}`,
  );
  assert.throws(() => dockerToOciManifest({ schemaVersion: 2, config: layer, layers: [{ ...layer, mediaType: 'application/x-unknown' }] }, config), /Unknown media type/);
});
