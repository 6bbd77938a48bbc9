/**
 * bench/nix: the nix host's own work, against Nix's own way of shipping the same paths.
 *
 *   layout    = lay an already-built closure of ~200 store paths out as an image:
 *               layering, tar, gzip, store (writeNixImage into a fresh directory store)
 *   reference = `nix-store --export` of the same paths piped to `gzip -1`
 *   cached    = a repeat manifest request for an image already built (evaluation of the
 *               package set, then the image by cache key), on a server child process
 *
 * Each leaf package holds 256 KiB of a real binary (busybox) and a text file, so the
 * bytes compress as store contents do. Target: layout ≤ 1.5x reference.
 * Run: npm run build && node dist/bench/nix.js
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { ContentStore } from '../src/content/store.js';
import { FsBackend } from '../src/storage/fs.js';
import { writeNixImage } from '../src/nix/image.js';
import { NixTool } from '../src/nix/tool.js';
import { exec } from '../test/support/tools.js';
import { nixEnvironment } from '../test/support/nix-fixtures.js';
import { mb, median, runBench, startServerProcess, timed } from './support.js';

const LEAVES = 199;
const ROUNDS = 3;

const PACKAGE_SET = `let
  system = builtins.currentSystem;
  leaf = i: derivation {
    name = "leaf\${toString i}"; inherit system; builder = "/bin/sh";
    args = [ "-c" ''
      B=/bin/busybox
      $B mkdir -p $out/bin $out/share/doc
      $B head -c 262144 /bin/busybox > $out/bin/leaf\${toString i}
      echo leaf \${toString i} >> $out/bin/leaf\${toString i}
      $B chmod +x $out/bin/leaf\${toString i}
      $B seq 1 4000 | $B sed 's/^/line of documentation for leaf \${toString i} /' > $out/share/doc/README
    '' ];
  };
  leaves = builtins.genList leaf ${LEAVES};
in {
  big = derivation {
    name = "big"; inherit system; builder = "/bin/sh";
    args = [ "-c" "/bin/busybox mkdir -p $out; echo \${toString leaves} > $out/deps" ];
  };
}
`;

runBench(async () => {
  const work = await mkdtemp(path.join(tmpdir(), 'kontain-bench-nix-'));
  try {
    const env = await nixEnvironment(work);
    Object.assign(process.env, env);
    const pkgs = path.join(work, 'pkgs.nix');
    await writeFile(pkgs, PACKAGE_SET);
    const nix = new NixTool({ timeoutMs: 1_800_000, maxBuilds: 1 });
    const [out] = await nix.buildPackages(`import ${pkgs}`, [['big']]);
    const closure = await nix.closure([out!]);
    const narBytes = closure.reduce((n, p) => n + p.narSize, 0);
    console.log(`closure: ${closure.length} store paths, ${mb(narBytes)} (NAR)`);

    const layouts: number[] = [];
    const references: number[] = [];
    let imageBytes = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const storeDir = path.join(work, `store-${round}`);
      const store = new ContentStore(new FsBackend(storeDir));
      const layout = await timed(() => writeNixImage(store, { closure, packagePaths: [out!], shell: false, maxLayers: 64, annotations: {} }));
      layouts.push(layout.seconds);
      const { stdout } = await exec('du', ['-sb', path.join(storeDir, 'blobs')]);
      imageBytes = Number(stdout.split('\t')[0]);
      await rm(storeDir, { recursive: true, force: true });
      const paths = closure.map((p) => p.path).join(' ');
      const reference = await timed(() => exec('sh', ['-c', `nix-store --export ${paths} | gzip -1 | wc -c`], 600_000));
      references.push(reference.seconds);
      if (round === 0) console.log(`sizes: image blobs ${mb(imageBytes)}, nix-store --export | gzip -1 ${mb(Number(reference.result.stdout.trim()))}`);
    }
    const layout = median(layouts);
    const reference = median(references);
    console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (${process.env.BENCH_NOTE ?? 'machine shared'})`);
    console.log(`layout of ${closure.length} paths: ${layout.toFixed(2)} s (median of ${ROUNDS}); nix-store --export | gzip -1: ${reference.toFixed(2)} s; ratio ${(layout / reference).toFixed(2)}x (target ≤ 1.5x)`);

    const server = await startServerProcess({ ...env, KONTAIN_STORE: path.join(work, 'server-store'), KONTAIN_NIX_PACKAGES: `import ${pkgs}` });
    try {
      const url = `http://127.0.0.1:${server.port}/v2/nix/big/manifests/latest`;
      const headers = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
      const cold = await timed(async () => (await fetch(url, { headers })).status);
      const cached: number[] = [];
      for (let i = 0; i < 5; i++) cached.push((await timed(async () => (await fetch(url, { headers })).arrayBuffer())).seconds);
      console.log(`manifest: first pull (closure already built) ${cold.seconds.toFixed(2)} s, status ${cold.result}; cached pull ${(median(cached) * 1000).toFixed(0)} ms (median of 5)`);
    } finally {
      server.child.kill('SIGTERM');
    }
  } finally {
    await exec('chmod', ['-R', 'u+w', work]).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
});
