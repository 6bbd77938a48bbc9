/**
 * bench/buildpack: a cold build through the buildpack host against the same lifecycle run
 * alone, with the tests' builder (shell buildpack, stand-in creator; busybox-static) and
 * run image in a loopback docker-registry, in one run; then the manifest of the cached build.
 *   - reference: the buildpack script both executors run (buildah from the builder, the
 *     creator in a working container, export to an OCI layout) on a clone of the
 *     repository, with the run image copied into the layout by `skopeo copy`;
 *   - cold: the first pull of buildpack/bench/app:main from a fresh store (ls-remote,
 *     builder and run image metadata, fetch, run image layout, build, import);
 *   - cached: the same tag again (ls-remote, builder and run image HEADs, pointer read).
 * Figures only (the issue sets no target); kaniko's targets are the yardstick: cold
 * ≤ 1.3x the build alone, cached manifest ≤ 50 ms.
 * Run: npm run build && node dist/bench/buildpack.js   (needs git, buildah, skopeo, docker-registry)
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BUILDPACK_SCRIPT, recipeEnv } from '../src/builds/buildpack-script.js';
import { registriesConf } from '../src/builds/buildah.js';
import { request } from '../test/support/http.js';
import { startUpstreamRegistry } from '../test/support/upstream-registry.js';
import { startGitServer } from '../test/support/git-server.js';
import { pushTestBuilder } from '../test/support/buildpack-builder.js';
import { median, runBench, startServerProcess, timed } from './support.js';

const run = promisify(execFile);
const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
const CACHED_PULLS = 20;

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-buildpack-'));
  const registry = await startUpstreamRegistry();
  const git = await startGitServer();
  try {
    const { builder, runImage } = await pushTestBuilder(registry.host);
    const files: Record<string, string> = { 'greeting.txt': 'hello\n' };
    for (let i = 0; i < 50; i++) files[`data/file-${i}.txt`] = `line ${i}\n`.repeat(200);
    await git.createRepository('bench', 'app', files);

    // Reference: the same script on a clone, the run image put in the layout by skopeo.
    const builderDigest = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${builder}`])).stdout) as { Digest: string };
    const runDigest = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${runImage}`])).stdout) as { Digest: string };
    const runRepo = runImage.slice(0, runImage.lastIndexOf(':'));
    const ctx = path.join(work, 'ref');
    const reference = await timed(async () => {
      await run('git', ['clone', '-q', '--depth', '1', `${git.base}/bench/app`, path.join(ctx, 'app')]);
      await rm(path.join(ctx, 'app', '.git'), { recursive: true, force: true });
      const layout = path.join(ctx, 'layout', runRepo, ...runDigest.Digest.split(':'));
      await mkdir(path.dirname(layout), { recursive: true });
      // Relative to its parent: skopeo's oci: transport reads a `:` in the path (the registry's port) as a tag.
      await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${runRepo}@${runDigest.Digest}`, `oci:${path.basename(layout)}`], { cwd: path.dirname(layout) });
      const env = recipeEnv({ kind: 'buildpack', builder: `${builder.slice(0, builder.lastIndexOf(':'))}@${builderDigest.Digest}`, runImage: `${runRepo}@${runDigest.Digest}`, platformApi: '0.15', uid: 1000, gid: 1000 }, registriesConf([registry.host]));
      await run('sh', ['-c', BUILDPACK_SCRIPT], { env: { ...process.env, ...env, KONTAIN_CONTEXT: ctx, KONTAIN_WORK: path.join(work, 'ref-work') }, maxBuffer: 64 * 1024 * 1024 });
    });

    const { child, port } = await startServerProcess({
      KONTAIN_STORE: path.join(work, 'store'),
      KONTAIN_BUILD_DIR: path.join(work, 'builds'),
      KONTAIN_GIT_BASE: git.base,
      KONTAIN_INSECURE_REGISTRIES: `${registry.host},${git.host}`,
      KONTAIN_BUILD_ALLOW: 'bench/app',
      KONTAIN_BUILDPACK_BUILDER: builder,
      KONTAIN_BUILD_HOLD: '600',
    });
    try {
      const url = `http://127.0.0.1:${port}/v2/buildpack/bench/app/manifests/main`;
      const cold = await timed(() => request(url, { headers: ACCEPT }));
      if (cold.result.status !== 200) throw new Error(`cold pull answered ${cold.result.status}: ${cold.result.body.toString()}`);
      const cachedMs: number[] = [];
      for (let i = 0; i < CACHED_PULLS; i++) {
        const cached = await timed(() => request(url, { headers: ACCEPT }));
        if (cached.result.headers['docker-content-digest'] !== cold.result.headers['docker-content-digest']) throw new Error('the cached pull gave another image');
        cachedMs.push(cached.seconds * 1000);
      }
      cachedMs.sort((a, b) => a - b);
      console.log(`buildpack script alone (reference, clone + skopeo run image + creator): ${reference.seconds.toFixed(2)} s`);
      console.log(`buildpack cold build via kontain: ${cold.seconds.toFixed(2)} s  = ${(cold.seconds / reference.seconds).toFixed(2)}x the build alone`);
      console.log(`buildpack cached manifest:        median ${median(cachedMs).toFixed(1)} ms, max ${cachedMs.at(-1)!.toFixed(1)} ms over ${CACHED_PULLS} pulls`);
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
