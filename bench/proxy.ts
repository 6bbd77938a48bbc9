/**
 * bench/proxy: every layer of a ~200 MB four-layer image read through the JSON image-proxy
 * protocol (GetBlob + FinishPipe, one layer after another) by the same Python client,
 *   - from `skopeo experimental-image-proxy` (Debian's): the reference,
 *   - from `kontain experimental-image-proxy`,
 *   - the same from the compiled tree (dist/cmd), for comparison,
 * all reading the same upstream (Debian's docker-registry on loopback). One run each,
 * the process's start and Shutdown included, and the time each took to answer Initialize
 * (the process's start) and OpenImage. Target: kontain (bundle) ≤ 1.0x skopeo wall.
 * Run: npm run build && node dist/bench/proxy.js   (needs skopeo, docker-registry, python3)
 * BENCH_CPU_PROF=DIR writes a CPU profile of the kontain proxy process into DIR.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startUpstreamRegistry } from '../test/support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout } from '../test/support/upstream-images.js';
import { isolatedSkopeoFiles, kontainCommand, runClient } from '../test/support/image-proxy.js';
import { BUNDLE_ENTRY } from '../test/support/server-process.js';
import { mb, runBench } from './support.js';

const LAYERS = 4;
const LAYER_BYTES = 50_000_000;

interface LayersRead {
  bytes: number;
  layers: number;
  seconds: number;
  /** From starting the proxy to the reply to Initialize (its start, mostly), and to OpenImage's. */
  initialize_seconds: number;
  open_seconds: number;
  /** The proxy process's user + system CPU time. */
  cpu_seconds: number;
  exit: number;
}

async function main() {
  const store = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-proxy-'));
  const upstream = await startUpstreamRegistry();
  try {
    const files = await isolatedSkopeoFiles();
    const layers = [];
    for (let i = 0; i < LAYERS; i++) layers.push(await tarLayer({ [`layer-${i}.bin`]: randomBytes(LAYER_BYTES) }));
    const layout = await writeOciLayout(await layoutDir(), 'v1', [{ layers }]);
    await pushOciLayout(layout, `${upstream.host}/bench/big:v1`);
    const ref = `docker://${upstream.host}/bench/big:v1`;

    const skopeo = ['skopeo', '--policy', files.policy, 'experimental-image-proxy', '--authfile', files.authfile, '--tls-verify=false'];
    // As production runs it: the bundle (the container image's kontain).
    const kontain = [process.execPath, BUNDLE_ENTRY, 'experimental-image-proxy', '--authfile', files.authfile, '--tls-verify=false'];
    if (process.env.BENCH_CPU_PROF) kontain.splice(1, 0, '--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`);
    const compiled = kontainCommand('experimental-image-proxy', '--authfile', files.authfile, '--tls-verify=false');
    const env = { KONTAIN_STORE: store, KONTAIN_LOG_LEVEL: 'warn' };
    const reference = await runClient<LayersRead>('json-layers', skopeo, [ref], {}, 600_000);
    const ours = await runClient<LayersRead>('json-layers', kontain, [ref], env, 600_000);
    const oursCompiled = await runClient<LayersRead>('json-layers', compiled, [ref], env, 600_000);
    for (const r of [ours, oursCompiled]) if (r.bytes !== reference.bytes) throw new Error(`kontain read ${r.bytes} bytes, skopeo ${reference.bytes}`);

    const ms = (seconds: number) => `${(seconds * 1000).toFixed(0)} ms`;
    const line = (r: LayersRead) =>
      `${r.seconds.toFixed(2)} s (${mb(r.bytes / r.seconds)}/s), proxy CPU ${r.cpu_seconds.toFixed(2)} s; Initialize replied after ${ms(r.initialize_seconds)}, OpenImage after ${ms(r.open_seconds)}`;
    console.log(`image: ${reference.layers} layers, ${mb(reference.bytes)}`);
    console.log(`skopeo experimental-image-proxy:             ${line(reference)}`);
    console.log(`kontain experimental-image-proxy (bundle):   ${line(ours)}`);
    console.log(`kontain experimental-image-proxy (compiled): ${line(oursCompiled)}`);
    console.log(`ratio kontain (bundle)/skopeo: ${(ours.seconds / reference.seconds).toFixed(2)}x wall, ${(ours.cpu_seconds / reference.cpu_seconds).toFixed(2)}x CPU, ${(ours.initialize_seconds / reference.initialize_seconds).toFixed(2)}x to Initialize  (target ≤ 1.0x wall)`);
  } finally {
    await upstream.stop();
    await rm(store, { recursive: true, force: true });
  }
}

runBench(main);
