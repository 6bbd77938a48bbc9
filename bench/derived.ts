/**
 * bench/derived: how fast flatten and estargz turn an upstream image into theirs.
 *   - reference: `gunzip | gzip -1` of the same layer blobs, one after another, in the same run;
 *   - flatten and estargz: one manifest request (which makes the whole image) on a fresh
 *     store each round, against Debian's docker-registry on loopback holding the image.
 * Throughput is MB/s of uncompressed layer data. Targets: each host ≥ 0.7x the pipe.
 * Then both hosts convert a ~1 GB image and the server's peak RSS is read (target < 300 MB).
 * Run: npm run build && node dist/bench/derived.js   (needs skopeo and docker-registry)
 * BENCH_MB (default 500) sets the throughput image's size; BENCH_RSS_MB (default 1000) the other's.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { request } from '../test/support/http.js';
import { startUpstreamRegistry, type UpstreamRegistry } from '../test/support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from '../test/support/upstream-images.js';
import { mb, median, peakRss, runBench, startServerProcess, timed } from './support.js';

const exec = promisify(execFile);
const ROUNDS = 3;
const LAYERS = 5;
const HOSTS = ['flatten', 'estargz'] as const;

/**
 * Files shaped like a real image's: mostly text-like data that gzip shrinks about 2-3x, a
 * fifth incompressible (binaries, archives), sizes from 2 KB to 8 MB so eStargz both packs
 * small files and chunks large ones. A seeded generator keeps the file list the same.
 */
function layerFiles(layer: number, bytes: number, text: Buffer): Record<string, Buffer> {
  let seed = (0x9e3779b9 ^ (layer * 0x85ebca6b)) >>> 0 || 1;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const files: Record<string, Buffer> = {};
  let total = 0;
  for (let i = 0; total < bytes; i++) {
    const size = Math.min(bytes - total, next() % 10 === 0 ? 1_000_000 + (next() % 7_000_000) : 2_000 + (next() % 120_000));
    // Slices of one text pool: gzip's 32 KB window cannot see that they repeat.
    const offset = next() % (text.length - size);
    files[`usr/share/layer${layer}/dir${i % 37}/file-${i}.dat`] = next() % 5 === 0 ? randomBytes(size) : text.subarray(offset, offset + size);
    total += size;
  }
  return files;
}

/** Words of random letters separated by spaces: compresses about as well as source text. */
function textPool(bytes: number): Buffer {
  const words = Array.from({ length: 4096 }, () => randomBytes(2 + (randomBytes(1)[0]! % 9)).map((b) => 97 + (b % 26)).toString() + ' ');
  const parts: string[] = [];
  for (let length = 0; length < bytes; ) {
    const word = words[Math.floor(Math.random() * words.length)]!;
    parts.push(word);
    length += word.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

async function pushImage(upstream: UpstreamRegistry, name: string, totalBytes: number): Promise<{ layout: WrittenLayout; uncompressed: number }> {
  const layers: Buffer[] = [];
  const text = textPool(16_000_000);
  for (let i = 0; i < LAYERS; i++) layers.push(await tarLayer(layerFiles(i, Math.floor(totalBytes / LAYERS), text)));
  const uncompressed = layers.reduce((sum, l) => sum + l.length, 0);
  const layout = await writeOciLayout(await layoutDir(), 'v1', [{ layers }]);
  await pushOciLayout(layout, `${upstream.host}/${name}:v1`);
  return { layout, uncompressed };
}

/** `gunzip | gzip -1` over every layer blob of the layout, in order. */
async function referencePipe(layout: WrittenLayout): Promise<number> {
  const blobs = layout.images[0]!.layers.map((l) => path.join(layout.dir, 'blobs', 'sha256', l.digest.slice(7)));
  const script = blobs.map((b) => `gunzip -c '${b}' | gzip -1 > /dev/null`).join(' && ');
  return (await timed(() => exec('sh', ['-c', script]))).seconds;
}

/** One manifest request on a fresh server and store: the time to make the whole image. */
async function convert(work: string, upstream: UpstreamRegistry, host: string, name: string): Promise<{ seconds: number; rss: number }> {
  const store = await mkdtemp(path.join(work, 'store-'));
  const server = await startServerProcess({ KONTAIN_STORE: store, KONTAIN_INSECURE_REGISTRIES: upstream.host, KONTAIN_GC_INTERVAL: '0' });
  try {
    const url = `http://127.0.0.1:${server.port}/v2/${host}/${upstream.host.replace(':', '-')}/${name}/manifests/v1`;
    const { seconds, result } = await timed(() => request(url, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' }, timeoutMs: 30 * 60_000 }));
    if (result.status !== 200) throw new Error(`${host}: ${result.status} ${result.body.toString()}`);
    return { seconds, rss: await peakRss(server.child.pid!) };
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((resolve) => server.child.once('exit', resolve));
    await rm(store, { recursive: true, force: true });
  }
}

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-derived-'));
  const upstream = await startUpstreamRegistry();
  try {
    const throughputBytes = Number(process.env.BENCH_MB ?? 500) * 1e6;
    const { layout, uncompressed } = await pushImage(upstream, 'bench/medium', throughputBytes);
    const compressed = layout.images[0]!.layers.reduce((sum, l) => sum + l.size, 0);
    console.log(`image: ${LAYERS} layers, ${mb(uncompressed)} uncompressed, ${mb(compressed)} gzip; medians of ${ROUNDS} rounds`);
    const pipe: number[] = [];
    const times: Record<string, number[]> = Object.fromEntries(HOSTS.map((h) => [h, []]));
    for (let round = 0; round < ROUNDS; round++) {
      pipe.push(await referencePipe(layout));
      for (const host of HOSTS) times[host]!.push((await convert(work, upstream, host, 'bench/medium')).seconds);
    }
    const rate = (seconds: number) => uncompressed / 1e6 / seconds;
    const reference = rate(median(pipe));
    console.log(`gunzip | gzip -1       ${median(pipe).toFixed(2)}s  ${reference.toFixed(1)} MB/s`);
    for (const host of HOSTS) {
      const seconds = median(times[host]!);
      console.log(`${host.padEnd(22)} ${seconds.toFixed(2)}s  ${rate(seconds).toFixed(1)} MB/s  ${(rate(seconds) / reference).toFixed(2)}x the pipe (target >= 0.70x)`);
    }

    const rssBytes = Number(process.env.BENCH_RSS_MB ?? 1000) * 1e6;
    const big = await pushImage(upstream, 'bench/big', rssBytes);
    for (const host of HOSTS) {
      const { seconds, rss } = await convert(work, upstream, host, 'bench/big');
      console.log(`${host} of ${mb(big.uncompressed)}: ${seconds.toFixed(2)}s, server peak RSS ${mb(rss)} (target < 300 MB)`);
    }
  } finally {
    await upstream.stop();
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
