import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { startServerProcess } from './support/server-process.js';
import { skopeoCopy } from './support/tools.js';
import { startFakeGcs } from './support/fake-gcs.js';

// Packages a server with the embedded default (directory store, embedded queue) must
// not load at start: each costs a cold Cloud Run instance time and memory.
const LOADED_ONLY_WHEN_USED = ['@google-cloud/storage', '@google-cloud/tasks', '@google-cloud/cloudbuild', 'google-auth-library', '@viz-js/viz'];

const RECORD_IMPORTS = ['--import', fileURLToPath(new URL('./support/record-imports.js', import.meta.url))];

// Hosts whose modules (bundle chunks named after them) load on their first request.
const HOST_MODULES = ['nix', 'kaniko', 'buildpack', 'ko', 'apko', 'flatten', 'estargz', 'static', 'mirror'];
/** The bundle's chunk for a module imported on first use is named after its file: `./nix-AB12CD34.js`. */
const loadsChunk = (imported: Set<string>, name: string) => [...imported].some((s) => new RegExp(`^\\./${name}-[A-Z0-9]+\\.js$`).test(s));

const importedPackages = async (log: string) => new Set((await readFile(log, 'utf8')).split('\n').filter(Boolean));
const loads = (imported: Set<string>, name: string) => [...imported].some((s) => s === name || s.startsWith(name + '/'));

test("the production bundle serves a pullable image and loads no cloud client, Graphviz or other host's module at start", { timeout: 120_000 }, async () => {
  const work = await mkdtemp(path.join(tmpdir(), 'kontain-startup-'));
  const importLog = path.join(work, 'imports.log');
  await writeFile(importLog, '');
  await mkdir(path.join(work, 'static'));
  const server = await startServerProcess(
    { KONTAIN_STORE: path.join(work, 'store'), KONTAIN_TEST_IMPORT_LOG: importLog, KONTAIN_STATIC_ROOT: path.join(work, 'static') },
    { nodeArgs: RECORD_IMPORTS },
  );
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const check = await fetch(`${base}/v2/`);
    assert.equal(check.status, 200);
    assert.equal(check.headers.get('docker-distribution-api-version'), 'registry/2.0');

    // A whole pull through the bundle: the layer's bytes are what its digest says.
    const layout = path.join(work, 'layout');
    await skopeoCopy(`docker://127.0.0.1:${server.port}/random/startup:1x1000`, `oci:${layout}:x`, ['--src-tls-verify=false']);
    const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
    const manifestDigest: string = index.manifests[0].digest;
    const manifest = JSON.parse(await readFile(path.join(layout, 'blobs', 'sha256', manifestDigest.slice(7)), 'utf8'));
    assert.equal(manifest.layers.length, 1);
    const layer = await readFile(path.join(layout, 'blobs', 'sha256', manifest.layers[0].digest.slice(7)));
    assert.equal('sha256:' + createHash('sha256').update(layer).digest('hex'), manifest.layers[0].digest);

    const imported = await importedPackages(importLog);
    for (const name of LOADED_ONLY_WHEN_USED) assert.ok(!loads(imported, name), `${name} was loaded by a server that does not use it`);
    // The record sees the host that was pulled from, and no other host's module.
    assert.ok(loadsChunk(imported, 'random'), `the record shows no random module: ${[...imported].join(', ')}`);
    for (const name of HOST_MODULES) assert.ok(!loadsChunk(imported, name), `the ${name} host's module was loaded before any request for it`);
    // The landing page describes every host without loading one.
    const landing = await (await fetch(`${base}/`)).text();
    for (const name of HOST_MODULES) assert.match(landing, new RegExp(`<h2>${name}</h2>`));
    // A host's first request loads its module, and only its own.
    const nix = await fetch(`${base}/v2/nix/hello/manifests/latest`);
    assert.ok(nix.status >= 400 && nix.status < 500, `nix without a package set answers a client error, not ${nix.status}`);
    const afterNix = await importedPackages(importLog);
    assert.ok(loadsChunk(afterNix, 'nix'), 'the nix host was asked for a tag without loading its module');
    for (const name of HOST_MODULES.filter((n) => n !== 'nix')) assert.ok(!loadsChunk(afterNix, name), `the ${name} host's module was loaded by a request for nix`);
    // startupMs is what a cold instance's first client waits for at least; it must be logged.
    assert.match(server.output(), /"startupMs":\d+/);
  } finally {
    server.child.kill('SIGTERM');
    await rm(work, { recursive: true, force: true });
  }
});

test('a server with a gs:// store does load the GCS client (the import record sees lazy loads)', { timeout: 120_000 }, async () => {
  const work = await mkdtemp(path.join(tmpdir(), 'kontain-startup-'));
  const importLog = path.join(work, 'imports.log');
  await writeFile(importLog, '');
  const gcs = await startFakeGcs();
  const server = await startServerProcess(
    { KONTAIN_STORE: 'gs://kontain-startup/x', KONTAIN_GCS_ENDPOINT: gcs.endpoint, KONTAIN_TEST_IMPORT_LOG: importLog },
    { nodeArgs: RECORD_IMPORTS },
  );
  try {
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/v2/`)).status, 200);
    const imported = await importedPackages(importLog);
    assert.ok(loads(imported, '@google-cloud/storage'), `the record shows no GCS client: ${[...imported].join(', ')}`);
    assert.ok(!loads(imported, '@google-cloud/tasks'), 'the Cloud Tasks client was loaded without Cloud Tasks configured');
  } finally {
    server.child.kill('SIGTERM');
    await gcs.close();
    await rm(work, { recursive: true, force: true });
  }
});
