/**
 * bench/random: how close making and pulling random images comes to the machine's
 * physical floor, measured in the same run.
 *
 *   floor  = sha256 over N bytes twice + writing N bytes once (fsynced) to the store's disk
 *   (a)    = the manifest request that makes the image (all blobs written when it answers)
 *   (b)    = a complete `skopeo copy` of the image (make + transfer + skopeo's own writes)
 *
 * Then the server's peak RSS while it makes and serves a ~1 GB image.
 * Run: npm run bench  (needs skopeo; not part of npm test)
 */
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mb, median, peakRss, runBench, startServerProcess, timed } from './support.js';

const exec = promisify(execFile);
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const ROUNDS = 3;

async function floor(bytes: number, dir: string): Promise<number> {
  const chunk = randomFillSync(Buffer.allocUnsafe(1 << 20));
  const { seconds } = await timed(async () => {
    const a = createHash('sha256');
    const b = createHash('sha256');
    const file = await open(path.join(dir, 'floor.bin'), 'w');
    for (let done = 0; done < bytes; done += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, bytes - done));
      a.update(part);
      b.update(part);
      await file.write(part);
    }
    await file.sync();
    await file.close();
    a.digest();
    b.digest();
  });
  await rm(path.join(dir, 'floor.bin'));
  return seconds;
}

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-'));
  const store = path.join(work, 'store');
  const policy = path.join(work, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const { child, port } = await startServerProcess({ KONTAIN_STORE: store });
  const host = `127.0.0.1:${port}`;
  try {
    console.log(`medians of ${ROUNDS} runs\nimage                 bytes     floor   (a) make  (a)/floor  (b) skopeo  (b)/floor`);
    for (const [layers, size] of [
      [1, 99_000_000],
      [4, 25_000_000],
    ] as const) {
      const total = layers * size;
      // fsync time varies from run to run: each figure is the median of ROUNDS runs.
      const floors: number[] = [];
      const makes: number[] = [];
      const copies: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        floors.push(await floor(total, work));
        makes.push(
          (
            await timed(async () => {
              const res = await fetch(`http://${host}/v2/random/bench/manifests/${layers}x${size}`, { headers: { Accept: OCI_MANIFEST } });
              if (res.status !== 200) throw new Error(`manifest request: ${res.status} ${await res.text()}`);
              await res.arrayBuffer();
            })
          ).seconds,
        );
        const dest = path.join(work, `copy-${layers}`);
        copies.push(
          (
            await timed(() =>
              exec('skopeo', ['copy', '--policy', policy, '--src-tls-verify=false', `docker://${host}/random/bench:${layers}x${size}`, `oci:${dest}:x`], {
                maxBuffer: 1 << 24,
              }),
            )
          ).seconds,
        );
        await rm(dest, { recursive: true, force: true });
      }
      const [f, a, b] = [median(floors), median(makes), median(copies)];
      console.log(
        `${`random:${layers}x${size}`.padEnd(18)}${mb(total).padStart(9)}  ${f.toFixed(3).padStart(6)}s  ${a.toFixed(3).padStart(7)}s  ${(a / f).toFixed(2).padStart(8)}x  ${b.toFixed(3).padStart(9)}s  ${(b / f).toFixed(2).padStart(8)}x`,
      );
    }
    // ~1 GB: 11 layers of 95 MB, made and then pulled in full by skopeo.
    const big = path.join(work, 'big');
    const { seconds } = await timed(() =>
      exec('skopeo', ['copy', '--policy', policy, '--src-tls-verify=false', `docker://${host}/random/big:11x95000000`, `oci:${big}:x`], {
        maxBuffer: 1 << 24,
      }),
    );
    const rss = await peakRss(child.pid!);
    console.log(`\nserving random:11x95000000 (${mb(11 * 95_000_000)}) took ${seconds.toFixed(1)}s; server peak RSS ${mb(rss)} (target < 150 MB)`);
  } finally {
    child.kill('SIGTERM');
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
