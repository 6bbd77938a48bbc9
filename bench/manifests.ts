/**
 * bench/manifests: requests per second for cached manifests, kontain against the
 * distribution registry (Debian's docker-registry) serving the same manifest, in one run.
 *   - GET and HEAD by digest of a random image and of a mirrored image,
 *   - GET and HEAD by tag of the mirrored image (kontain reuses a tag's upstream resolution
 *     for KONTAIN_MIRROR_TAG_TTL seconds, 10 by default, then asks with a HEAD again;
 *     distribution answers from its own tag),
 * each from 32 keep-alive connections for DURATION seconds (HEAD on plain sockets, see
 * load), plus kontain's RSS after start and its peak RSS under the load.
 * Target (issue 12): every kontain row ≥ 5x distribution's for the same manifest.
 * Run: npm run build && node dist/bench/manifests.js   (needs docker-registry)
 */
import { Pool } from 'undici';
import { connect } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startUpstreamRegistry } from '../test/support/upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout } from '../test/support/upstream-images.js';
import { mb, peakRss, runBench, startServerProcess } from './support.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = 32;
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json';

async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
}

/**
 * Requests per second from CONNECTIONS keep-alive connections, each sending its next
 * request when the answer is in, for DURATION seconds. GET uses undici (Node's own HTTP
 * client). HEAD cannot: undici closes the connection after every HEAD (undici#258), so a
 * HEAD row would measure a TCP connection per request, and wrk and autocannon wait for a
 * body after a HEAD that has a Content-Length. HEAD is therefore sent on plain sockets
 * (headConnection): an answer to HEAD has no body, so it ends at its blank line.
 */
async function load(url: string, method: 'GET' | 'HEAD', seconds = DURATION): Promise<number> {
  const target = new URL(url);
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const started = performance.now();
  if (method === 'HEAD') {
    await Promise.all(Array.from({ length: CONNECTIONS }, () => headConnection(target, deadline, () => done++)));
  } else {
    const pool = new Pool(target.origin, { connections: CONNECTIONS, pipelining: 1 });
    const worker = async () => {
      while (performance.now() < deadline) {
        const answer = await pool.request({ path: target.pathname, method, headers: { accept: ACCEPT } });
        await answer.body.dump();
        if (answer.statusCode !== 200) throw new Error(`${method} ${url} answered ${answer.statusCode}`);
        done++;
      }
    };
    await Promise.all(Array.from({ length: CONNECTIONS }, worker));
    await pool.close();
  }
  return done / ((performance.now() - started) / 1000);
}

/** One keep-alive connection sending HEAD after HEAD until the deadline; each 200 counts. */
function headConnection(target: URL, deadline: number, count: () => void): Promise<void> {
  const request = Buffer.from(`HEAD ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nAccept: ${ACCEPT}\r\n\r\n`);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(target.port), target.hostname);
    let pending = '';
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        if (!head.startsWith('HTTP/1.1 200 ')) {
          socket.destroy();
          reject(new Error(`HEAD ${target.href} answered ${head.split('\r\n')[0]}`));
          return;
        }
        count();
        if (performance.now() >= deadline) {
          socket.end();
          resolve();
          return;
        }
        socket.write(request);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve());
  });
}

async function main() {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'kontain-bench-manifests-'));
  const upstream = await startUpstreamRegistry();
  const store = path.join(work, 'store');
  let kontain: Awaited<ReturnType<typeof startServerProcess>> | undefined;
  try {
    const layout = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'hello.txt': 'hello\n' })] }]);
    await pushOciLayout(layout, `${upstream.host}/bench/small:v1`);
    const upstreamDigest = layout.images[0]!.manifest.digest;

    kontain = await startServerProcess({ KONTAIN_STORE: store, KONTAIN_INSECURE_REGISTRIES: upstream.host, KONTAIN_LOG_LEVEL: 'info' });
    const idleRss = await residentBytes(kontain.child.pid!);
    const base = `http://127.0.0.1:${kontain.port}/v2`;
    const mirrorRepo = `mirror/${upstream.host.replace(':', '-')}/bench/small`;
    const headers = { accept: ACCEPT };
    const randomAnswer = await fetch(`${base}/random/bench/manifests/1x100`, { headers });
    const randomDigest = randomAnswer.headers.get('docker-content-digest')!;
    await randomAnswer.arrayBuffer();
    const mirrorAnswer = await fetch(`${base}/${mirrorRepo}/manifests/v1`, { headers });
    await mirrorAnswer.arrayBuffer();
    if (mirrorAnswer.headers.get('docker-content-digest') !== upstreamDigest) throw new Error('the mirror served another digest than the upstream');

    const cases: Array<{ name: string; kontain: string; peer: string }> = [
      { name: 'random by digest', kontain: `${base}/random/bench/manifests/${randomDigest}`, peer: `${upstream.url}/v2/bench/small/manifests/${upstreamDigest}` },
      { name: 'mirror by digest', kontain: `${base}/${mirrorRepo}/manifests/${upstreamDigest}`, peer: `${upstream.url}/v2/bench/small/manifests/${upstreamDigest}` },
      { name: 'mirror by tag', kontain: `${base}/${mirrorRepo}/manifests/v1`, peer: `${upstream.url}/v2/bench/small/manifests/v1` },
    ];
    console.log(`${CONNECTIONS} keep-alive connections, ${DURATION} s per row; requests/s`);
    console.log('case                        kontain   distribution   ratio (target ≥ 5x)');
    for (const c of cases) {
      for (const method of ['GET', 'HEAD'] as const) {
        // A second of each first: both servers' code is compiled hot before it is timed.
        await load(c.kontain, method, 1);
        await load(c.peer, method, 1);
        const ours = await load(c.kontain, method);
        const theirs = await load(c.peer, method);
        console.log(`${`${method} ${c.name}`.padEnd(26)} ${ours.toFixed(0).padStart(8)} ${theirs.toFixed(0).padStart(14)}   ${(ours / theirs).toFixed(2)}x`);
      }
    }
    console.log(`kontain RSS: ${mb(idleRss)} after start (target ≤ 80 MB), peak ${mb(await peakRss(kontain.child.pid!))} under the load`);
  } finally {
    kontain?.child.kill('SIGTERM');
    await upstream.stop();
    await rm(work, { recursive: true, force: true });
  }
}

runBench(main);
