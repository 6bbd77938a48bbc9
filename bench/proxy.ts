/**
 * bench/proxy: every layer of a ~200 MB four-layer image read through the JSON image-proxy
 * protocol (GetBlob + FinishPipe, one layer after another) by the same Python client,
 *   - from `skopeo experimental-image-proxy` (Debian's): the reference,
 *   - from `kontain experimental-image-proxy`,
 * both reading the same upstream (Debian's docker-registry on loopback). One run each,
 * the process's start and Shutdown included. Target: kontain ≤ 1.0x skopeo.
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
import { mb, runBench } from './support.js';

const LAYERS = 4;
const LAYER_BYTES = 50_000_000;

interface LayersRead {
  bytes: number;
  layers: number;
  seconds: number;
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
    const kontain = kontainCommand('experimental-image-proxy', '--authfile', files.authfile, '--tls-verify=false');
    if (process.env.BENCH_CPU_PROF) kontain.splice(1, 0, '--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`);
    const reference = await runClient<LayersRead>('json-layers', skopeo, [ref], {}, 600_000).then((result) => ({ result }));
    const ours = await runClient<LayersRead>('json-layers', kontain, [ref], { KONTAIN_STORE: store, KONTAIN_LOG_LEVEL: 'warn' }, 600_000).then((result) => ({ result }));
    if (ours.result.bytes !== reference.result.bytes) throw new Error(`kontain read ${ours.result.bytes} bytes, skopeo ${reference.result.bytes}`);

    const line = (r: LayersRead) => `${r.seconds.toFixed(2)} s (${mb(r.bytes / r.seconds)}/s), proxy CPU ${r.cpu_seconds.toFixed(2)} s`;
    console.log(`image: ${reference.result.layers} layers, ${mb(reference.result.bytes)}`);
    console.log(`skopeo experimental-image-proxy:  ${line(reference.result)}`);
    console.log(`kontain experimental-image-proxy: ${line(ours.result)}`);
    console.log(`ratio kontain/skopeo: ${(ours.result.seconds / reference.result.seconds).toFixed(2)}x wall, ${(ours.result.cpu_seconds / reference.result.cpu_seconds).toFixed(2)}x CPU  (target ≤ 1.0x wall)`);
  } finally {
    await upstream.stop();
    await rm(store, { recursive: true, force: true });
  }
}

runBench(main);
