/**
 * bench/static: the static host against nginx serving `kontain export nginx` of the same
 * tree, in one run:
 *   - blob MB/s: `curl` GETs of a 100 MB blob (per round the median of BLOB_GETS, then the
 *     median of ROUNDS, the two servers alternating: one GET takes ~50 ms and single GETs
 *     vary by a third on this kind of machine),
 *   - manifest requests/s: `wrk` GETs of a manifest by tag (median of ROUNDS runs of SECONDS).
 * Both serve from one process (nginx: one worker) and write no access log: kontain runs
 * with KONTAIN_LOG_LEVEL=warn. A third server shows what node:http alone gives: a bare
 * node:http listener that answers every request with kontain's own manifest answer (the
 * same status, headers and bytes) and does nothing else. kontain answers a repeated
 * manifest on the connection, before node:http reads it (src/server/connection-entry.ts),
 * so it can pass that server.
 * Targets: blobs ≥ 0.7x nginx, manifests ≥ 0.5x nginx.
 * Run: npm run build && node dist/bench/static.js   (needs nginx, curl and wrk)
 */
import { spawn } from 'node:child_process';
import { execFile } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MediaType } from '../src/oci/mediatypes.js';
import { exportNginx } from '../src/static/nginx.js';
import { startNginx } from '../test/support/nginx.js';
import { oneLayerImage, writeDirCopy } from '../test/support/static-tree.js';
import { freePort } from '../test/support/upstream-registry.js';
import { median, runBench } from './support.js';
import { BUNDLE_ENTRY, SERVER_NODE_FLAGS } from '../test/support/server-process.js';

const exec = promisify(execFile);
const ROUNDS = 5;
const SECONDS = 5;
const BLOB_GETS = 5;
const BLOB_BYTES = 100_000_000;
const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');

/** A skopeo `dir:` copy written directly: one 100 MB layer, its config and manifest. */
async function writeTree(root: string): Promise<{ manifest: string; blob: string }> {
  const image = oneLayerImage(randomBytes(BLOB_BYTES));
  await writeDirCopy(path.join(root, 'bench', 'big', 'latest'), image);
  const layer = image.layer;
  return { manifest: '/v2/static/bench/big/manifests/latest', blob: `/v2/static/bench/big/blobs/${sha256(layer)}` };
}

/** `kontain serve` as a child process with the static host on `root`, once it answers. */
async function startKontainProcess(root: string, store: string): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  // The bundle, as production runs it.
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, BUNDLE_ENTRY, 'serve'], {
    env: { ...process.env, PORT: String(port), KONTAIN_LOG_LEVEL: 'warn', KONTAIN_STATIC_ROOT: root, KONTAIN_STORE: store, KONTAIN_GC_INTERVAL: '0' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return serverProcess(child, port, 'kontain');
}

/**
 * node:http alone: answering every request with `answer` (kontain's own manifest answer:
 * status, headers, body), one writeHead and end, nothing else.
 */
async function startBareNode(work: string, answer: Response): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const file = path.join(work, 'bare-node.mjs');
  const headers = [...answer.headers].filter(([name]) => name !== 'date' && name !== 'connection' && name !== 'keep-alive').flat();
  const body = Buffer.from(await answer.arrayBuffer()).toString('base64');
  await writeFile(
    file,
    `import { createServer } from 'node:http';
const headers = ${JSON.stringify(headers)};
const body = Buffer.from(${JSON.stringify(body)}, 'base64');
createServer((req, res) => { res.writeHead(${answer.status}, headers); res.end(body); }).listen(${port}, '127.0.0.1');
`,
  );
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'inherit', 'inherit'] });
  return serverProcess(child, port, 'bare node:http');
}

/** A server child process on `port`, once it answers `/v2/`. */
async function serverProcess(child: ReturnType<typeof spawn>, port: number, name: string): Promise<{ url: string; stop(): Promise<void> }> {
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    if (await fetch(`${url}/v2/`).then((r) => r.ok, () => false)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    async stop() {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

/** MB/s of one GET of `url`, the body thrown away by curl. */
async function blobSpeed(url: string): Promise<number> {
  const { stdout } = await exec('curl', ['-sf', '-o', '/dev/null', '-w', '%{size_download} %{speed_download}', url]);
  const [size, speed] = stdout.trim().split(' ').map(Number) as [number, number];
  if (size !== BLOB_BYTES) throw new Error(`${url} gave ${size} bytes`);
  return speed / 1e6;
}

/** Requests/s of `wrk` on `url` over SECONDS (one thread, 16 connections). */
async function manifestRate(url: string): Promise<number> {
  const { stdout } = await exec('wrk', ['-t1', '-c16', `-d${SECONDS}s`, '-H', `Accept: ${MediaType.ociManifest}`, url]);
  if (/Non-2xx/.test(stdout)) throw new Error(`wrk saw errors from ${url}:\n${stdout}`);
  const match = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  if (!match) throw new Error(`no rate in wrk output:\n${stdout}`);
  return Number(match[1]);
}

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-static-'));
  const root = path.join(work, 'tree');
  const paths = await writeTree(root);
  const kontain = await startKontainProcess(root, path.join(work, 'store'));
  const nginx = await startNginx(await exportNginx({ root, namePrefix: 'static' }));
  const bare = await startBareNode(work, await fetch(kontain.url + paths.manifest, { headers: { accept: MediaType.ociManifest } }));
  try {
    const servers = { kontain: kontain.url, nginx: nginx.url };
    const blob: Record<string, number[]> = { kontain: [], nginx: [] };
    const manifest: Record<string, number[]> = { kontain: [], nginx: [], bare: [] };
    // Warm all (page cache, JIT) before measuring.
    for (const base of [...Object.values(servers), bare.url]) {
      if (base !== bare.url) await blobSpeed(base + paths.blob);
      await exec('wrk', ['-t1', '-c16', '-d1s', base + paths.manifest]);
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, base] of Object.entries(servers)) {
        const gets: number[] = [];
        for (let i = 0; i < BLOB_GETS; i++) gets.push(await blobSpeed(base + paths.blob));
        blob[name]!.push(median(gets));
        manifest[name]!.push(await manifestRate(base + paths.manifest));
      }
      manifest.bare!.push(await manifestRate(bare.url + paths.manifest));
    }
    const b = { kontain: median(blob.kontain!), nginx: median(blob.nginx!) };
    const m = { kontain: median(manifest.kontain!), nginx: median(manifest.nginx!), bare: median(manifest.bare!) };
    const spread = (values: number[]) => `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}`;
    console.log(`blob (100 MB)  kontain ${b.kontain.toFixed(0)} MB/s  nginx ${b.nginx.toFixed(0)} MB/s  ratio ${(b.kontain / b.nginx).toFixed(2)}x (target ≥ 0.7x)`);
    console.log(`  rounds: kontain ${spread(blob.kontain!)}, nginx ${spread(blob.nginx!)} MB/s`);
    console.log(`manifest       kontain ${m.kontain.toFixed(0)} req/s  nginx ${m.nginx.toFixed(0)} req/s  ratio ${(m.kontain / m.nginx).toFixed(2)}x (target ≥ 0.5x)`);
    console.log(`  rounds: kontain ${spread(manifest.kontain!)}, nginx ${spread(manifest.nginx!)} req/s`);
    console.log(`  node:http alone with the same answer ${m.bare.toFixed(0)} req/s = ${(m.bare / m.nginx).toFixed(2)}x nginx; kontain ${(m.kontain / m.bare).toFixed(2)}x of it`);
  } finally {
    await kontain.stop();
    await nginx.stop();
    await bare.stop();
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
