/**
 * bench/startup: what a cold Cloud Run instance makes its first client wait for.
 * Process start to the first `GET /v2/` 200, for
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
import { BUNDLE_ENTRY } from '../test/support/server-process.js';
import { freePort } from '../test/support/upstream-registry.js';
import { mb, median, runBench } from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);

/** Spawns `node <args>` with PORT set, polls /v2/ until it answers 200, then /healthz likewise. */
async function timeToFirstAnswer(args: string[], env: Record<string, string>): Promise<{ ms: number; readyMs: number; rss: number }> {
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
    while (!(await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false))) await sleep(2);
    const readyMs = performance.now() - started;
    return { ms, readyMs, rss: Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024 };
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
    const times = { bare: [] as number[], bundle: [] as number[], bundleReady: [] as number[], compiled: [] as number[] };
    const rss: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      times.bare.push((await timeToFirstAnswer([bare], {})).ms);
      const store = { KONTAIN_STORE: path.join(work, `store-${round}`) };
      const bundled = await timeToFirstAnswer([BUNDLE_ENTRY, 'serve'], store);
      times.bundle.push(bundled.ms);
      times.bundleReady.push(bundled.readyMs);
      rss.push(bundled.rss);
      times.compiled.push((await timeToFirstAnswer([compiled, 'serve'], store)).ms);
    }
    const floor = median(times.bare);
    console.log(`process start → first GET /v2/ 200, median of ${ROUNDS}`);
    console.log(`bare Node HTTP server (floor)  ${floor.toFixed(0).padStart(5)} ms`);
    console.log(`kontain (bundle, production)   ${median(times.bundle).toFixed(0).padStart(5)} ms   ${(median(times.bundle) / floor).toFixed(2)}x the floor (target ≤ 300 ms)`);
    console.log(`kontain (bundle) ready         ${median(times.bundleReady).toFixed(0).padStart(5)} ms   ${(median(times.bundleReady) / floor).toFixed(2)}x the floor (first GET /healthz 200: Express loaded)`);
    console.log(`kontain (compiled tree)        ${median(times.compiled).toFixed(0).padStart(5)} ms   ${(median(times.compiled) / floor).toFixed(2)}x the floor`);
    console.log(`kontain RSS after its first answer: ${mb(median(rss))} (target ≤ 80 MB)`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
