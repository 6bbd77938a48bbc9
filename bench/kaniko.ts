/**
 * bench/kaniko: a cold build through the kaniko host against `buildah bud` alone, on the
 * same Dockerfile (FROM, COPY, RUN) and the same busybox-static base in a loopback
 * docker-registry, in one run; then the manifest of the cached build.
 *   - reference: `buildah bud` with the flags the local executor uses (vfs, chroot, gzip
 *     layers, --timestamp of the commit, fresh storage so the base is pulled) on a clone;
 *   - cold: the first pull of kaniko/bench/app:main from a fresh store (ls-remote, fetch,
 *     base resolution, build, import into the store);
 *   - cached: the same tag again, several times (ls-remote, base HEAD, pointer read).
 * The cold comparison alternates ROUNDS times (BENCH_ROUNDS, default 5), each round on a
 * repository of its own with the same files (so kontain's build is cold) and fresh buildah
 * storage, and compares medians: one buildah run alone varies by ±25% on this machine.
 * Targets: cold ≤ 1.3x the reference; cached manifest ≤ 50 ms.
 * Run: npm run build && node dist/bench/kaniko.js   (needs git, buildah, skopeo, docker-registry)
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { request } from '../test/support/http.js';
import { startUpstreamRegistry } from '../test/support/upstream-registry.js';
import { startGitServer } from '../test/support/git-server.js';
import { pushBusyboxBase } from '../test/support/busybox-image.js';
import { median, runBench, startServerProcess, timed } from './support.js';
import { lsRemote as lsRemoteNative } from '../src/git/ls-remote.js';

const run = promisify(execFile);
const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
const CACHED_PULLS = 20;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-kaniko-'));
  const registry = await startUpstreamRegistry();
  const git = await startGitServer();
  try {
    await pushBusyboxBase(registry.host, 'base/busybox', '1');
    const files: Record<string, string> = {
      Dockerfile: `FROM ${registry.host}/base/busybox:1\nWORKDIR /app\nCOPY . /app/\nRUN for i in 1 2 3 4 5 6 7 8; do cat /app/data/*.txt > /app/out-$i.txt; done && ls -l /app > /app/listing.txt\nENTRYPOINT ["/bin/sh"]\n`,
    };
    for (let i = 0; i < 50; i++) files[`data/file-${i}.txt`] = `line ${i}\n`.repeat(200);
    const repos = Array.from({ length: ROUNDS }, (_, i) => (i === 0 ? 'app' : `app-${i}`));
    for (const repo of repos) await git.createRepository('bench', repo, files);

    const policy = path.join(work, 'policy.json');
    const registries = path.join(work, 'registries.conf');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await writeFile(registries, `[[registry]]\nlocation = "${registry.host}"\ninsecure = true\n`);
    /** Reference: buildah bud alone on a clone, fresh storage, same flags as the local executor. */
    const buildahAlone = async (repo: string) => {
      const clone = path.join(work, `clone-${repo}`);
      await run('git', ['clone', '-q', `${git.base}/bench/${repo}`, clone]);
      // kontain builds with --timestamp <commit time> (the same commit gives the same bytes); so does the reference.
      const commitTime = (await run('git', ['-C', clone, 'log', '-1', '--format=%ct'])).stdout.trim();
      await rm(path.join(clone, '.git'), { recursive: true, force: true });
      const root = path.join(work, `ref-${repo}`);
      return (
        await timed(() =>
          run('buildah', ['--root', path.join(root, 'storage'), '--runroot', path.join(root, 'run'), '--storage-driver', 'vfs', 'bud', '--isolation', 'chroot', '-D=false', '--layers=false', '--pull=always', '--timestamp', commitTime, '--signature-policy', policy, '-f', path.join(clone, 'Dockerfile'), '-t', `oci:${path.join(root, 'image')}:latest`, clone], {
            env: { ...process.env, CONTAINERS_REGISTRIES_CONF: registries, TMPDIR: work },
            maxBuffer: 64 * 1024 * 1024,
          }),
        )
      ).seconds;
    };

    const { child, port, logs } = await startServerProcess({
      KONTAIN_STORE: path.join(work, 'store'),
      KONTAIN_BUILD_DIR: path.join(work, 'builds'),
      KONTAIN_GIT_BASE: git.base,
      KONTAIN_INSECURE_REGISTRIES: `${registry.host},${git.host}`,
      KONTAIN_BUILD_ALLOW: 'bench/*',
      KONTAIN_BUILD_HOLD: '600',
    });
    try {
      const url = `http://127.0.0.1:${port}/v2/kaniko/bench/app/manifests/main`;
      const referenceSeconds: number[] = [];
      /** The build's own log of the last build started: it times buildah, the import and the whole task. */
      const lastBuildTimes = async () => {
        const started = logs.filter((line) => line.message === 'build started').at(-1);
        const buildLog = started ? (await request(`http://127.0.0.1:${port}/_builds/${String(started.build)}/log`)).body.toString() : '';
        const seconds = (pattern: RegExp) => Number(pattern.exec(buildLog)?.[1] ?? NaN);
        const times = { bud: seconds(/buildah bud took ([\d.]+) s/), import: seconds(/read into the store in ([\d.]+) s/), task: seconds(/built sha256:[0-9a-f]+ in ([\d.]+) s/) };
        if (Number.isNaN(times.task)) throw new Error(`no timings in the build log: ${JSON.stringify(started)} ${JSON.stringify(buildLog.slice(0, 300))}`);
        return times;
      };
      const colds = [];
      const ownSeconds: number[] = [];
      let times!: Awaited<ReturnType<typeof lastBuildTimes>>;
      // bench/app last: its image is the one the cached pulls below ask for.
      for (const repo of [...repos].reverse()) {
        referenceSeconds.push(await buildahAlone(repo));
        const pull = await timed(() => request(url.replace('/bench/app/', `/bench/${repo}/`), { headers: ACCEPT }));
        if (pull.result.status !== 200) throw new Error(`cold pull answered ${pull.result.status}: ${pull.result.body.toString()}`);
        colds.push(pull);
        times = await lastBuildTimes();
        ownSeconds.push(pull.seconds - times.bud);
      }
      const cold = colds.at(-1)!;
      const coldSeconds = colds.map((pull) => pull.seconds);
      const reference = { seconds: median(referenceSeconds) };
      const coldMedian = median(coldSeconds);
      const ownMedian = median(ownSeconds);
      const { bud: budSeconds, import: importSeconds, task: taskSeconds } = times;
      const cachedMs: number[] = [];
      for (let i = 0; i < CACHED_PULLS; i++) {
        const cached = await timed(() => request(url, { headers: ACCEPT }));
        if (cached.result.headers['docker-content-digest'] !== cold.result.headers['docker-content-digest']) throw new Error('the cached pull gave another image');
        cachedMs.push(cached.seconds * 1000);
      }
      cachedMs.sort((a, b) => a - b);
      const cachedMedian = median(cachedMs);
      // By full commit: no ls-remote, so this is kontain's own share of a cached pull.
      const commit = (await run('git', ['ls-remote', `${git.base}/bench/app`, 'refs/heads/main'])).stdout.slice(0, 40);
      const byCommitMs: number[] = [];
      for (let i = 0; i < CACHED_PULLS; i++) {
        const cached = await timed(() => request(url.replace(/main$/, commit), { headers: ACCEPT }));
        if (cached.result.headers['docker-content-digest'] !== cold.result.headers['docker-content-digest']) throw new Error('the pull by commit gave another image');
        byCommitMs.push(cached.seconds * 1000);
      }
      const lsRemote: number[] = [];
      for (let i = 0; i < 5; i++) lsRemote.push((await timed(() => run('git', ['ls-remote', `${git.base}/bench/app`]))).seconds * 1000);
      // The listing as kontain reads it natively, alone: git daemon forks upload-pack for
      // each connection, so this is the floor of a pull by branch against this server.
      const [gitHost, gitPort] = git.host.split(':');
      const native: number[] = [];
      for (let i = 0; i < CACHED_PULLS; i++) {
        native.push((await timed(() => lsRemoteNative({ url: new URL(`${git.base}/bench/app`), address: gitHost!, port: Number(gitPort), timeoutMs: 30_000, maxBytes: 1 << 20 }))).seconds * 1000);
      }
      const nativeMedian = median(native);
      const list = (values: number[]) => values.map((v) => v.toFixed(2)).join(', ');
      console.log(`buildah bud alone (reference): median ${reference.seconds.toFixed(2)} s of ${ROUNDS} (${list(referenceSeconds)})`);
      console.log(`kaniko cold build via kontain:  median ${coldMedian.toFixed(2)} s of ${ROUNDS} (${list(coldSeconds)})  = ${(coldMedian / reference.seconds).toFixed(2)}x buildah alone (target ≤ 1.3x)`);
      // buildah alone takes either ~1.7 s or ~2.6 s here, run by kontain or not (--timestamp makes
      // the slow one frequent), so medians of a few rounds can still compare a fast reference with
      // slow builds or the reverse. What kontain adds to buildah's own time is steady; added to
      // the reference, it gives the ratio that buildah's modes do not move.
      console.log(`  kontain's own time per cold pull (all but buildah bud): median ${ownMedian.toFixed(2)} s of ${ROUNDS} (${list(ownSeconds)}) = ${((reference.seconds + ownMedian) / reference.seconds).toFixed(2)}x buildah alone with buildah's time as in the reference`);
      console.log(`  of which, in the last round: buildah bud ${budSeconds.toFixed(2)} s, reading its OCI layout into the store ${importSeconds.toFixed(2)} s, the rest of the build task ${(taskSeconds - budSeconds - importSeconds).toFixed(2)} s, before the task (ref listing, fetch, base pin, queue) ${(cold.seconds - taskSeconds).toFixed(2)} s`);
      console.log(`kaniko cached manifest:         median ${cachedMedian.toFixed(1)} ms, max ${cachedMs.at(-1)!.toFixed(1)} ms over ${CACHED_PULLS} pulls (target ≤ 50 ms)`);
      console.log(`  by full commit (no ls-remote): median ${median(byCommitMs).toFixed(1)} ms; git ls-remote alone: median ${median(lsRemote).toFixed(1)} ms`);
      console.log(`  the ref listing read natively, alone (git daemon's floor): median ${nativeMedian.toFixed(1)} ms; kontain's own share of a pull by branch: ${(cachedMedian - nativeMedian).toFixed(1)} ms`);
    } finally {
      child.kill('SIGTERM');
    }
  } finally {
    await git.stop();
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
