/**
 * bench/apko: cold and cached apko builds of the test fixtures, and where a cold build's
 * time goes.
 *
 *   floor  = GET every package of the image from the same loopback repository and inflate
 *            it once: the least work any build of that image must do
 *   cold   = the manifest request that builds the image in a fresh server (empty store,
 *            empty index cache); all blobs are written when it answers
 *   cached = the same request again (index within its 60 s cache, image by cache key)
 *
 * The cold build's split comes from the generator's own `apko built` log line: index
 * fetch (indexMs), package fetch (fetchMs), verification (verifyMs: signature,
 * checksum, datahash, file list), assembly (assembleMs: layer + config + manifest).
 * Run: npm run build && node dist/bench/apko.js
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { APK_FIXTURES } from '../test/support/apk-fixtures.js';
import { startApkRepository, type ApkRepositoryServer } from '../test/support/apk-repository.js';
import { buildApk, buildIndex, makeTestKey } from '../test/support/apk-builder.js';
import { mb, median, runBench, startServerProcess, timed } from './support.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
const ROUNDS = 3;

interface Case {
  name: string;
  repository: string;
  /** Repository paths of every package the build fetches (for the floor). */
  packages: string[];
}

interface BuiltLog {
  indexMs: number;
  fetchMs: number;
  verifyMs: number;
  assembleMs: number;
  bytesFetched: number;
}


async function floor(repo: ApkRepositoryServer, packages: string[]): Promise<number> {
  const { seconds } = await timed(async () => {
    for (const p of packages) {
      const bytes = Buffer.from(await (await fetch(`${repo.url}${p}`)).arrayBuffer());
      createHash('sha256').update(gunzipSync(bytes)).digest();
    }
  });
  return seconds;
}

async function get(host: string, repository: string): Promise<void> {
  const res = await fetch(`http://${host}/v2/${repository}/manifests/latest`, { headers: { Accept: OCI } });
  if (res.status !== 200) throw new Error(`${repository}: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-apko-'));
  const repo = await startApkRepository();
  await repo.addDirectory('/melange', path.join(APK_FIXTURES, 'apko-melange-repo'));
  await repo.addDirectory('/private', path.join(APK_FIXTURES, 'apko-private-repo'));
  // One synthetic package big enough to show streaming: 32 MB random + 32 MB text.
  const key = makeTestKey('bench.rsa.pub');
  const big = buildApk(
    {
      name: 'bigdata',
      version: '1-r0',
      files: [
        { path: 'usr/share/big/random.bin', content: randomBytes(32 * 1024 * 1024) },
        { path: 'usr/share/big/text.txt', content: 'the quick brown fox jumps over the lazy dog\n'.repeat(760_000) },
      ],
    },
    key,
  );
  repo.files.set(`/big/x86_64/${big.fileName}`, big.bytes);
  repo.files.set('/big/x86_64/APKINDEX.tar.gz', buildIndex([big.record], key));
  repo.files.set('/big/bench.rsa.pub', Buffer.from(key.publicPem));
  const config = (repos: string[], keys: string[], packages: string[], archs: string[]) =>
    Buffer.from(`contents:\n  repositories: [${repos.map((r) => repo.url + r).join(', ')}]\n  keyring: [${keys.map((k) => repo.url + k).join(', ')}]\n  packages: [${packages.join(', ')}]\narchs: [${archs.join(', ')}]\n`);
  repo.files.set('/configs/cross.yaml', config(['/melange', '/private'], ['/melange/melange.rsa.pub', '/private/private_pkg_key.rsa.pub'], ['package-y'], ['amd64', 'arm64']));
  repo.files.set('/configs/big.yaml', config(['/big'], ['/big/bench.rsa.pub'], ['bigdata'], ['amd64']));
  const url = (name: string) => `apko/url/${repo.host.replace(':', '-')}/configs/${name}.yaml`;

  const cases: Case[] = [
    { name: 'replayout (2 pkgs)', repository: 'apko/replayout', packages: ['pretend-baselayout', 'replayout'].map((n) => `/melange/x86_64/${n}-1.0.0-r0.apk`) },
    {
      name: 'package-y x2 arch',
      repository: url('cross'),
      packages: ['x86_64', 'aarch64'].flatMap((a) => [`/melange/${a}/pretend-baselayout-1.0.0-r0.apk`, `/private/${a}/package-x-1.0.0-r0.apk`, `/private/${a}/package-y-1.0.0-r0.apk`]),
    },
    { name: `bigdata (${mb(big.bytes.length)})`, repository: url('big'), packages: [`/big/x86_64/${big.fileName}`] },
  ];

  try {
    console.log(`medians of ${ROUNDS} runs, each cold run in a fresh server with an empty store`);
    console.log('image                    floor    cold  cold/floor   cached  cached/floor | cold split: index  fetch  verify  assemble');
    for (const c of cases) {
      const floors: number[] = [];
      const colds: number[] = [];
      const cacheds: number[] = [];
      const splits: BuiltLog[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        floors.push(await floor(repo, c.packages));
        const store = path.join(work, `store-${round}`);
        const { child, port } = await startServerProcess({ KONTAIN_STORE: store, KONTAIN_INSECURE_REGISTRIES: repo.host, KONTAIN_APK_REPOSITORY: `${repo.url}/melange`, KONTAIN_APK_KEYRING: `${repo.url}/melange/melange.rsa.pub`, KONTAIN_APK_ARCHS: 'x86_64' });
        const built: BuiltLog[] = [];
        let pending = '';
        child.stdout!.on('data', (chunk: Buffer) => {
          pending += chunk.toString();
          const lines = pending.split('\n');
          pending = lines.pop()!;
          for (const line of lines) {
            if (!line.includes('"apko built"')) continue;
            built.push(JSON.parse(line) as BuiltLog);
          }
        });
        try {
          const host = `127.0.0.1:${port}`;
          colds.push((await timed(() => get(host, c.repository))).seconds);
          cacheds.push((await timed(() => get(host, c.repository))).seconds);
          // Several archs build one after the other: their phases add up.
          const sum = (k: keyof BuiltLog) => built.reduce((n, b) => n + b[k], 0);
          splits.push({ indexMs: sum('indexMs'), fetchMs: sum('fetchMs'), verifyMs: sum('verifyMs'), assembleMs: sum('assembleMs'), bytesFetched: sum('bytesFetched') });
        } finally {
          child.kill('SIGTERM');
          await rm(store, { recursive: true, force: true });
        }
      }
      const [f, cold, cached] = [median(floors), median(colds), median(cacheds)];
      const split = (k: keyof BuiltLog) => median(splits.map((s) => s[k]));
      const total = split('indexMs') + split('fetchMs') + split('verifyMs') + split('assembleMs');
      const pct = (k: keyof BuiltLog) => `${split(k)}ms ${((100 * split(k)) / Math.max(1, total)).toFixed(0)}%`;
      console.log(
        `${c.name.padEnd(22)} ${(f * 1000).toFixed(1).padStart(6)}ms ${(cold * 1000).toFixed(0).padStart(5)}ms ${(cold / f).toFixed(1).padStart(8)}x ${(cached * 1000).toFixed(1).padStart(7)}ms ${(cached / f).toFixed(2).padStart(9)}x | ${pct('indexMs')}  ${pct('fetchMs')}  ${pct('verifyMs')}  ${pct('assembleMs')}`,
      );
      const fetching = split('indexMs') + split('fetchMs');
      console.log(`${''.padEnd(22)} fetching (index + packages) ${((100 * fetching) / Math.max(1, total)).toFixed(0)}% vs assembling ${((100 * split('assembleMs')) / Math.max(1, total)).toFixed(0)}% (verify ${((100 * split('verifyMs')) / Math.max(1, total)).toFixed(0)}%) of ${total} ms measured inside the build; ${split('bytesFetched') >= 1e6 ? mb(split('bytesFetched')) : `${(split('bytesFetched') / 1000).toFixed(1)} kB`} of packages`);
    }
  } finally {
    await repo.stop();
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
