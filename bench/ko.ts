/**
 * bench/ko: how long the ko host takes to answer a tag, for the test fixture (a small
 * module, a two-platform base image in Debian's docker-registry, a file:// proxy):
 *   - cold: empty store and empty Go cache (the standard library is compiled too),
 *   - warm: empty store, Go cache kept (a new version of a module seen before),
 *   - cached: the same tag again (a pointer hit: one .info read and one HEAD of the base).
 * Reference, in the same run: `go build` of the same package with the same flags for the
 * same two platforms, with an empty and with a warm Go cache.
 * Run: npm run build && node dist/bench/ko.js   (needs go, skopeo and docker-registry)
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { request } from '../test/support/http.js';
import { startUpstreamRegistry } from '../test/support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout } from '../test/support/upstream-images.js';
import { proxyURL, writeGoModule } from '../test/support/go-module-proxy.js';
import { runBench, startServerProcess, timed } from './support.js';

const run = promisify(execFile);
const MODULE = 'example.com/bench';
const PLATFORMS = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64' },
];
const SOURCE = {
  'go.mod': `module ${MODULE}\n\ngo 1.19\n`,
  'cmd/app/main.go': 'package main\n\nimport (\n\t"encoding/json"\n\t"fmt"\n\t"net/http"\n)\n\nfunc main() {\n\tb, _ := json.Marshal(map[string]int{"a": 1})\n\tfmt.Println(string(b), http.StatusOK)\n}\n',
  'cmd/app/kodata/index.html': '<p>hello</p>\n',
};

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-ko-'));
  const upstream = await startUpstreamRegistry();
  try {
    const proxy = path.join(work, 'proxy');
    for (const version of ['v1.0.0', 'v1.0.1']) await writeGoModule(proxy, MODULE, version, SOURCE);
    const base = await writeOciLayout(
      await layoutDir(),
      'v1',
      await Promise.all(PLATFORMS.map(async (platform) => ({ layers: [await tarLayer({ 'etc/base': platform.architecture })], platform }))),
    );
    await pushOciLayout(base, `${upstream.host}/base/static:v1`);

    // Reference: go build of the unpacked module, both platforms, cold then warm cache.
    const source = path.join(work, 'source');
    for (const [name, content] of Object.entries(SOURCE)) {
      await mkdir(path.dirname(path.join(source, name)), { recursive: true });
      await writeFile(path.join(source, name), content);
    }
    const goBuildAll = async (cache: string) => {
      for (const p of PLATFORMS) {
        await run('go', ['build', '-trimpath', '-buildvcs=false', '-o', path.join(work, `ref-${p.architecture}`), `${MODULE}/cmd/app`], {
          cwd: source,
          env: { ...process.env, CGO_ENABLED: '0', GOOS: p.os, GOARCH: p.architecture, GOCACHE: cache, GOFLAGS: '-mod=mod', GOPROXY: 'off', HOME: work },
        });
      }
    };
    const refCache = path.join(work, 'ref-cache');
    const refCold = (await timed(() => goBuildAll(refCache))).seconds;
    const refWarm = (await timed(() => goBuildAll(refCache))).seconds;

    const koCache = path.join(work, 'ko-cache');
    const pull = async (server: { port: number }, version: string) => {
      const res = await request(`http://127.0.0.1:${server.port}/v2/ko/${MODULE}/cmd/app/manifests/${version}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
      if (res.status !== 200) throw new Error(`${version}: ${res.status} ${res.body.toString()}`);
    };
    const env = { KONTAIN_GOPROXY: proxyURL(proxy), KONTAIN_KO_BASE: `${upstream.host}/base/static:v1`, KONTAIN_INSECURE_REGISTRIES: upstream.host, KONTAIN_KO_CACHE: koCache, KONTAIN_GC_INTERVAL: '0' };
    const server = await startServerProcess({ ...env, KONTAIN_STORE: path.join(work, 'store') });
    let cold: number, warm: number, cached: number;
    try {
      cold = (await timed(() => pull(server, 'v1.0.0'))).seconds;
      warm = (await timed(() => pull(server, 'v1.0.1'))).seconds;
      const times: number[] = [];
      for (let i = 0; i < 5; i++) times.push((await timed(() => pull(server, 'v1.0.1'))).seconds);
      cached = times.sort((a, b) => a - b)[2]!;
    } finally {
      server.child.kill('SIGTERM');
    }
    console.log(`ko build of ${MODULE}/cmd/app for ${PLATFORMS.length} platforms (fixture module, loopback base)`);
    console.log(`go build, empty Go cache      ${refCold.toFixed(2)}s`);
    console.log(`ko host, cold                  ${cold.toFixed(2)}s   ${(cold / refCold).toFixed(2)}x go build cold`);
    console.log(`go build, warm Go cache        ${refWarm.toFixed(2)}s`);
    console.log(`ko host, new version (warm)    ${warm.toFixed(2)}s   ${(warm / refWarm).toFixed(2)}x go build warm`);
    console.log(`ko host, cached tag            ${(cached * 1000).toFixed(1)}ms (median of 5)`);
  } finally {
    await upstream.stop();
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
