/**
 * bench/startup: what a cold Cloud Run instance makes its first client wait for.
 * Process start to the first `GET /v2/` 200 (and, for the bundle, to the first manifest made
 * and to Express loaded), for
 *   - a bare Node HTTP server (the floor: Node's own start),
 *   - kontain as production runs it (the bundle, embedded default store),
 *   - kontain from the compiled tree (dist/cmd), for comparison,
 * alternating, ROUNDS times each, medians; and kontain's RSS right after that answer.
 * kontain listens before it has loaded Express and the rest (start-gate.ts): the time to
 * its first `GET /healthz` 200 (an Express route) is printed too, as "ready".
 * Targets (issue 12): kontain ≤ 300 ms; idle RSS ≤ 80 MB.
 * Run: npm run build && node dist/bench/startup.js
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { BUNDLE_ENTRY, SERVER_NODE_FLAGS } from '../test/support/server-process.js';
import { freePort } from '../test/support/upstream-registry.js';
import { mb, median, runBench } from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);

/**
 * Spawns `node <args>` with PORT set, polls /v2/ until it answers 200; then (`pull`) asks
 * a manifest as a pull does next, and polls /healthz (served by Express) until it answers.
 */
async function timeToFirstAnswer(args: string[], env: Record<string, string>, pull = false): Promise<{ ms: number; manifestMs: number; readyMs: number; rss: number }> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env, PORT: String(port) }, stdio: 'ignore' });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
      const answered = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status === 200, () => false);
      if (answered) break;
      await sleep(2);
    }
    const ms = performance.now() - started;
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
    let manifestMs = NaN;
    if (pull) {
      const made = await fetch(`http://127.0.0.1:${port}/v2/random/start/manifests/1x10`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      await made.arrayBuffer();
      if (made.status !== 200) throw new Error(`the first manifest answered ${made.status}`);
      manifestMs = performance.now() - started;
    }
    while (!(await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false))) await sleep(2);
    const readyMs = performance.now() - started;
    return { ms, manifestMs, readyMs, rss: Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024 };
  } finally {
    child.kill('SIGKILL');
  }
}

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-startup-'));
  try {
    const bare = path.join(work, 'bare.mjs');
    await writeFile(bare, "import { createServer } from 'node:http';\ncreateServer((req, res) => res.end('{}')).listen(Number(process.env.PORT), '127.0.0.1');\n");
    const compiled = fileURLToPath(new URL('../cmd/kontain.js', import.meta.url));
    const times = { bare: [] as number[], bundle: [] as number[], bundleManifest: [] as number[], bundleReady: [] as number[], compiled: [] as number[] };
    const rss: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      times.bare.push((await timeToFirstAnswer([bare], {})).ms);
      const store = { KONTAIN_STORE: path.join(work, `store-${round}`) };
      const bundled = await timeToFirstAnswer([...SERVER_NODE_FLAGS, BUNDLE_ENTRY, 'serve'], store, true);
      times.bundle.push(bundled.ms);
      times.bundleManifest.push(bundled.manifestMs);
      times.bundleReady.push(bundled.readyMs);
      rss.push(bundled.rss);
      times.compiled.push((await timeToFirstAnswer([...SERVER_NODE_FLAGS, compiled, 'serve'], store)).ms);
    }
    const floor = median(times.bare);
    console.log(`process start → first GET /v2/ 200, median of ${ROUNDS}`);
    console.log(`bare Node HTTP server (floor)  ${floor.toFixed(0).padStart(5)} ms`);
    console.log(`kontain (bundle, production)   ${median(times.bundle).toFixed(0).padStart(5)} ms   ${(median(times.bundle) / floor).toFixed(2)}x the floor (target ≤ 300 ms)`);
    console.log(`kontain (bundle) 1st manifest${median(times.bundleManifest).toFixed(0).padStart(5)} ms   ${(median(times.bundleManifest) / floor).toFixed(2)}x the floor (then GET random/start:1x10 made and answered)`);
    console.log(`kontain (bundle) ready         ${median(times.bundleReady).toFixed(0).padStart(5)} ms   ${(median(times.bundleReady) / floor).toFixed(2)}x the floor (first GET /healthz 200: Express loaded)`);
    console.log(`kontain (compiled tree)        ${median(times.compiled).toFixed(0).padStart(5)} ms   ${(median(times.compiled) / floor).toFixed(2)}x the floor`);
    console.log(`kontain RSS after its first answer: ${mb(median(rss))} (target ≤ 80 MB)`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
