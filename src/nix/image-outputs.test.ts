import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ContentStore } from '../content/store.js';
import { FsBackend } from '../storage/fs.js';
import { ArchiveInvalid } from './docker-archive.js';
import { imageOutputKind, importStreamScript, parseLayerConfig } from './image-outputs.js';
import { NixTimeout } from './run.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-image-outputs-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function script(dir: string, body: string): Promise<string> {
  const file = path.join(dir, 'stream');
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
  return file;
}

// Without the kill at the limit this script would run to its 10-minute limit, past the test's own.
test('a script writing more than the byte limit is stopped, refused naming the variable, and its spool removed', { timeout: 120_000 }, async () => {
  await withDir(async (dir) => {
    const store = new ContentStore(new FsBackend(path.join(dir, 'store')));
    const work = path.join(dir, 'work');
    // Ignores SIGPIPE: only killing it stops it.
    const endless = await script(dir, "trap '' PIPE; while :; do head -c 65536 /dev/zero; done");
    assert.equal(await imageOutputKind(endless), 'stream-script');
    await assert.rejects(importStreamScript(store, endless, { workDir: work, timeoutMs: 600_000, maxBytes: 1024 * 1024 }, {}), (err: unknown) => {
      return err instanceof ArchiveInvalid && /more than 1048576 bytes \(KONTAIN_DERIVED_MAX_BYTES\)/.test(err.message);
    });
    assert.deepEqual(await readdir(work), []);
  });
});

test('a script past the time limit is killed and refused', async () => {
  await withDir(async (dir) => {
    const store = new ContentStore(new FsBackend(path.join(dir, 'store')));
    const slow = await script(dir, 'sleep 30');
    await assert.rejects(importStreamScript(store, slow, { workDir: path.join(dir, 'work'), timeoutMs: 300, maxBytes: 1024 }, {}), NixTimeout);
  });
});

test('layer configurations are recognised by their store_layers and customisation_layer', async () => {
  assert.ok(parseLayerConfig(JSON.stringify({ store_layers: [['/nix/store/a-x']], customisation_layer: '/nix/store/b-c', config: {} })));
  assert.equal(parseLayerConfig(JSON.stringify({ store_layers: [[1]], customisation_layer: '/nix/store/b-c' })), undefined);
  assert.equal(parseLayerConfig(JSON.stringify({ store_layers: [] })), undefined);
  assert.equal(parseLayerConfig('{not json'), undefined);
  await withDir(async (dir) => {
    const conf = path.join(dir, 'conf.json');
    await writeFile(conf, JSON.stringify({ store_layers: [], customisation_layer: '/nix/store/b-c' }));
    assert.equal(await imageOutputKind(conf), 'layer-config');
    await writeFile(conf, '{"name": "just json"}');
    assert.equal(await imageOutputKind(conf), undefined);
  });
});
