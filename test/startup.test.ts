import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { BUNDLE_ENTRY, SERVER_NODE_FLAGS, startServerProcess } from './support/server-process.js';
import { freePort } from './support/upstream-registry.js';
import { request, type HttpResult } from './support/http.js';
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
    await server.stop(); // its import hook may still write to the import log in `work`
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
    await server.stop(); // its import hook may still write to the import log in `work`
    await gcs.close();
    await rm(work, { recursive: true, force: true });
  }
});

/** The bundle's chunks that hold a package (esbuild marks each bundled file with a `// node_modules/<path>` line). */
async function chunksOf(pkg: string): Promise<string[]> {
  const dir = path.dirname(BUNDLE_ENTRY);
  const chunks: string[] = [];
  for (const file of await readdir(dir)) {
    if (file.endsWith('.js') && (await readFile(path.join(dir, file), 'utf8')).includes(`\n// node_modules/${pkg}/`)) chunks.push(`./${file}`);
  }
  return chunks;
}

/**
 * The bundle's server with the import of bundle chunk `held` waiting until the test calls
 * release(), recording what it imports; stop() releases it, stops it and removes its files.
 */
async function startHeld(held: string) {
  const work = await mkdtemp(path.join(tmpdir(), 'kontain-startup-'));
  const importLog = path.join(work, 'imports.log');
  const releaseFile = path.join(work, 'release');
  await writeFile(importLog, '');
  const port = await freePort();
  const child = spawn(process.execPath, [...RECORD_IMPORTS, BUNDLE_ENTRY, 'serve'], {
    env: { ...process.env, PORT: String(port), KONTAIN_STORE: path.join(work, 'store'), KONTAIN_TEST_IMPORT_LOG: importLog, KONTAIN_TEST_HOLD_IMPORT: `${held}:${releaseFile}` },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit');
  const release = () => writeFile(releaseFile, '');
  return {
    child,
    base: `http://127.0.0.1:${port}`,
    output: () => output,
    imported: () => importedPackages(importLog),
    release,
    async stop() {
      // A server stops once it has started: let it finish starting.
      await release();
      child.kill('SIGTERM');
      await exited;
      await rm(work, { recursive: true, force: true });
    },
  };
}

test('the bundle answers GET /v2/ before it loads Express, prom-client or the hosts; other requests wait for them, then are answered', { timeout: 120_000 }, async () => {
  const deferred = { express: await chunksOf('express'), 'prom-client': await chunksOf('prom-client') };
  for (const [pkg, chunks] of Object.entries(deferred)) assert.ok(chunks.length > 0, `no bundle chunk holds ${pkg}`);
  // The import of the rest of the server (assemble.ts) waits until the test releases it.
  const server = await startHeld('assemble');
  const { child, base } = server;
  try {
    let check: HttpResult | undefined;
    while (!check) {
      assert.equal(child.exitCode, null, `the server exited: ${server.output()}`);
      check = await request(`${base}/v2/`).catch(() => undefined);
      if (!check) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(check.status, 200);
    assert.equal(check.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.equal(check.body.toString(), '{}');
    const atFirstAnswer = await server.imported();
    assert.ok(loadsChunk(atFirstAnswer, 'assemble'), `the server did not start loading the rest: ${[...atFirstAnswer].join(', ')}`);
    for (const [pkg, chunks] of Object.entries(deferred)) {
      assert.ok(!chunks.some((chunk) => atFirstAnswer.has(chunk)), `${pkg} was loaded before the server answered GET /v2/`);
    }
    assert.ok(!loadsChunk(atFirstAnswer, 'random'), 'a host module was loaded at start');
    // Requests only the rest answers wait for it: not failed, not answered before it is there.
    let answered = false;
    const health = request(`${base}/healthz`).then((res) => ((answered = true), { status: res.status, body: res.body.toString() }));
    const manifest = request(`${base}/v2/random/gate/manifests/1x10`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    // The base route is still answered while they wait.
    assert.equal((await request(`${base}/v2/`)).status, 200);
    assert.equal(answered, false, '/healthz was answered before Express was loaded');
    await server.release();
    assert.deepEqual(await health, { status: 200, body: 'ok\n' });
    const made = await manifest;
    assert.equal(made.status, 200);
    assert.equal((JSON.parse(made.body.toString()) as { layers: unknown[] }).layers.length, 1);
    const afterwards = await server.imported();
    assert.ok(deferred.express.some((chunk) => afterwards.has(chunk)), 'Express was not loaded for /healthz');
    assert.match(server.output(), /"message":"kontain serving"/);
  } finally {
    await server.stop();
  }
});

test('with Express still loading, the bundle already answers manifests; what only Express answers waits for it', { timeout: 120_000 }, async () => {
  const express = await chunksOf('express');
  // The import of the Express app (app.ts) waits until the test releases it.
  const server = await startHeld('app');
  const { child, base } = server;
  try {
    while (!(await request(`${base}/v2/`).then(() => true, () => false))) {
      assert.equal(child.exitCode, null, `the server exited: ${server.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    let answered = false;
    const healthz = request(`${base}/healthz`).then((res) => ((answered = true), res));
    const made = await request(`${base}/v2/random/early/manifests/1x10`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(made.status, 200);
    assert.equal((JSON.parse(made.body.toString()) as { layers: unknown[] }).layers.length, 1);
    const config = (JSON.parse(made.body.toString()) as { config: { digest: string } }).config.digest;
    const blob = request(`${base}/v2/random/early/blobs/${config}`);
    assert.equal(answered, false, '/healthz was answered before Express was loaded');
    assert.doesNotMatch(server.output(), /"message":"kontain serving"/, 'the server said it was serving before Express was loaded');
    const imported = await server.imported();
    assert.ok(!express.some((chunk) => imported.has(chunk)), 'Express was loaded while its import was held');
    await server.release();
    assert.equal((await healthz).status, 200);
    // Blobs are Express's: the one asked while it was held is answered once it is there.
    assert.equal((await blob).status, 200);
    assert.match(server.output(), /"message":"kontain serving"/);
  } finally {
    await server.stop();
  }
});

test('the Docker image starts the server as `npm start` does: the same Node flags, the bundle, serve', async () => {
  const dockerfile = await readFile(fileURLToPath(new URL('../../Dockerfile', import.meta.url)), 'utf8');
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile);
  assert.ok(cmd, 'the Dockerfile has an exec-form CMD');
  // The distroless image's entrypoint is node: CMD holds node's arguments.
  assert.deepEqual(JSON.parse(cmd[1]!), [...SERVER_NODE_FLAGS, 'dist/bundle/kontain.js', 'serve']);
});
