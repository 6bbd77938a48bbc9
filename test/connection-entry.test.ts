/**
 * The connection entry (src/server/connection-entry.ts) answers remembered manifests and
 * the base route on the connection, before node:http reads them, and hands everything
 * else, with the rest of the connection, to node:http.
 * These tests send the same bytes to the server and to node:http alone (a second listener
 * with the server's request listener), and require the same bytes back, Date aside; that plain requests were answered without
 * node:http (no 'request' event); and that the connection is bounded as node:http bounds
 * its own: timeouts, a client that does not read, a closing server.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/server/logging.js';
import { startServer, type RunningServer } from '../src/server/serve.js';
import { MediaType } from '../src/oci/mediatypes.js';
import { layoutDir, tarLayer, writeOciLayout } from './support/upstream-images.js';
import { skopeoCopy } from './support/tools.js';
import { until } from './support/kontain-process.js';
import { oneLayerImage, writeDirCopy } from './support/static-tree.js';

const MANIFEST = '/v2/static/app/manifests/v1';
const ACCEPT = `Accept: ${MediaType.ociManifest}, ${MediaType.dockerManifest}`;

let work: string;
let root: string;
let kontain: RunningServer;
let log: Logger;
/** Requests node:http has read (its 'request' events). */
let nodeRequests = 0;
/** node:http alone with the server's request listener: what node:http answers without the entry. */
let nodeAlone: http.Server;
let nodeAlonePort: number;
const lines: Array<Record<string, unknown>> = [];
let manifestBytes: Buffer;
let bigManifestBytes: Buffer;
let closed = false;
let blobPath: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kontain-connection-entry-'));
  root = path.join(work, 'tree');
  const image = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'hello.txt': 'hello\n' })] }]);
  await mkdir(path.join(root, 'app', 'v1'), { recursive: true });
  await skopeoCopy(`oci:${image.dir}:v1`, `dir:${path.join(root, 'app', 'v1')}`, ['--quiet']);
  manifestBytes = await readFile(path.join(root, 'app', 'v1', 'manifest.json'));
  // A manifest beyond the 16 KiB the entries keep whole: an image with a long annotation.
  const small = oneLayerImage(Buffer.from('layer'));
  const big = JSON.parse(small.manifest.toString()) as Record<string, unknown>;
  big.annotations = { 'org.example.note': 'x'.repeat(20_000) };
  bigManifestBytes = Buffer.from(JSON.stringify(big));
  await writeDirCopy(path.join(root, 'big', 'v1'), { ...small, manifest: bigManifestBytes, digest: sha256(bigManifestBytes) });
  const layer = (JSON.parse(manifestBytes.toString()) as { layers: Array<{ digest: string }> }).layers[0]!.digest;
  blobPath = `/v2/static/app/blobs/${layer}`;
  const config = loadConfig({
    PORT: '0',
    KONTAIN_STORE: path.join(work, 'store'),
    KONTAIN_STATIC_ROOT: root,
    // Request log lines are node:http's to write: the entry answers only with them off.
    KONTAIN_LOG_LEVEL: 'warn',
    KONTAIN_HEADERS_TIMEOUT: '1',
  });
  log = createLogger(config.logLevel, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  kontain = await startServer(config, log, '127.0.0.1');
  const [listener] = kontain.server.listeners('request') as http.RequestListener[];
  kontain.server.on('request', () => nodeRequests++);
  nodeAlone = http.createServer({ keepAliveTimeout: kontain.server.keepAliveTimeout }, listener);
  await new Promise<void>((resolve) => nodeAlone.listen(0, '127.0.0.1', resolve));
  nodeAlonePort = (nodeAlone.address() as AddressInfo).port;
  // Asked until the entry answers it: node:http's path has then read and remembered it (a
  // file written in the last moments is never trusted to be unchanged, so not at once).
  await until('the entry to answer the manifest', async () => {
    const before = nodeRequests;
    await exchange(kontain.port, get(MANIFEST));
    return nodeRequests === before;
  });
});

after(async () => {
  nodeAlone.closeAllConnections();
  await new Promise((resolve) => nodeAlone.close(resolve));
  if (!closed) await kontain?.close();
  await rm(work, { recursive: true, force: true });
});

/** Sends `bytes` on a new connection, ends its side, and returns all it got back (Date values masked unless `dates`) once the server closes it. */
function exchange(port: number, bytes: string | Buffer, options: { endAfterMs?: number; dates?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      resolve(options.dates ? text : text.replace(/\r\nDate: [^\r]*\r\n/g, '\r\nDate: -\r\n'));
    });
    socket.write(bytes);
    // Ended later when the server is to answer first (or its socket would be closed before a slow answer).
    setTimeout(() => socket.end(), options.endAfterMs ?? 0);
  });
}

/** The same bytes to the server and to node:http alone: equal answers; returns the server's and the requests its node:http read. */
async function alike(bytes: string, what: string, endAfterMs = 300): Promise<{ answer: string; nodeRead: number }> {
  const before = nodeRequests;
  const answer = await exchange(kontain.port, bytes, { endAfterMs });
  const nodeRead = nodeRequests - before;
  assert.equal(answer, await exchange(nodeAlonePort, bytes, { endAfterMs }), `${what}: the entry answers as node:http does`);
  return { answer, nodeRead };
}

const get = (target: string, extra = '') => `GET ${target} HTTP/1.1\r\nHost: h\r\n${ACCEPT}\r\n${extra}\r\n`;
const sha256 = (bytes: Buffer) => 'sha256:' + createHash('sha256').update(bytes).digest('hex');

/** The answers in `text`, split by their Content-Length (HEAD answers have none of their body). */
function answers(text: string, heads: boolean[]): Array<{ status: number; headers: string; body: string }> {
  const out = [];
  let at = 0;
  for (const head of heads) {
    const end = text.indexOf('\r\n\r\n', at);
    assert.notEqual(end, -1, `answer ${out.length + 1} of ${heads.length} arrived`);
    const headers = text.slice(at, end);
    const length = head ? 0 : Number(/\r\ncontent-length: (\d+)/i.exec(headers)?.[1] ?? 0);
    out.push({ status: Number(headers.slice(9, 12)), headers, body: text.slice(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  assert.equal(at, text.length, 'no bytes beyond the answers');
  return out;
}

test('a remembered manifest, GET and HEAD, and the base route are answered on the connection, as node:http answers them', async () => {
  const { answer, nodeRead } = await alike(get(MANIFEST) + `HEAD ${MANIFEST} HTTP/1.1\r\nHost: h\r\n${ACCEPT}\r\n\r\n` + 'GET /v2/ HTTP/1.1\r\nHost: h\r\n\r\n', 'a manifest, its HEAD, the base route');
  assert.equal(nodeRead, 0, 'node:http read none of them');
  const [manifest, head, base] = answers(answer, [false, true, false]);
  assert.equal(manifest!.status, 200);
  assert.equal(manifest!.body, manifestBytes.toString('latin1'));
  assert.match(manifest!.headers, new RegExp(`\\r\\nDocker-Content-Digest: ${sha256(manifestBytes)}\\r\\n`));
  assert.match(manifest!.headers, new RegExp(`\\r\\nContent-Type: ${MediaType.ociManifest.replace(/[.+]/g, '\\$&')}\\r\\n`));
  assert.equal(head!.headers, manifest!.headers);
  assert.equal(base!.body, '{}');
  assert.match(base!.headers, /\r\nDocker-Distribution-API-Version: registry\/2\.0\r\n/);
});

test('a manifest over 16 KiB is answered on the connection too, GET and HEAD', async () => {
  const target = '/v2/static/big/manifests/v1';
  await until('the entry to answer the big manifest', async () => {
    const before = nodeRequests;
    await exchange(kontain.port, get(target));
    return nodeRequests === before;
  });
  const { answer, nodeRead } = await alike(get(target) + `HEAD ${target} HTTP/1.1\r\nHost: h\r\n${ACCEPT}\r\n\r\n`, 'a big manifest, and its HEAD');
  assert.equal(nodeRead, 0);
  const [whole, head] = answers(answer, [false, true]);
  assert.equal(whole!.body, bigManifestBytes.toString('latin1'));
  assert.match(whole!.headers, new RegExp(`\\r\\nDocker-Content-Digest: ${sha256(bigManifestBytes)}\\r\\n`));
  assert.equal(head!.headers, whole!.headers);
});

test('pipelined requests, some answered on the connection and the rest by node:http, are answered in order', async () => {
  const bytes = [get(MANIFEST), get('/v2/static/app/tags/list'), get(MANIFEST), get(blobPath), get('/v2/static/app/manifests/nope'), get(MANIFEST)].join('');
  const { answer, nodeRead } = await alike(bytes, 'pipelined', 1000);
  assert.equal(nodeRead, 5, 'the entry answered the first; node:http read the rest from the tag list on');
  const got = answers(answer, [false, false, false, false, false, false]);
  assert.deepEqual(
    got.map((a) => a.status),
    [200, 200, 200, 200, 404, 200],
  );
  assert.deepEqual(JSON.parse(got[1]!.body), { name: 'static/app', tags: ['v1'] });
  assert.equal(sha256(Buffer.from(got[3]!.body, 'latin1')), blobPath.slice(blobPath.lastIndexOf('/') + 1));
  assert.match(got[4]!.body, /MANIFEST_UNKNOWN/);
  for (const i of [0, 2, 5]) assert.equal(got[i]!.body, manifestBytes.toString('latin1'));
});

test('requests the entry does not read plainly are node:http\'s, and answered as node:http answers them', async () => {
  const cases: Array<[string, string]> = [
    ['a body by Content-Length holding a request', get(MANIFEST, 'Content-Length: 44\r\n') + get(MANIFEST).slice(0, 44)],
    ['a chunked body holding a request', get(MANIFEST, 'Transfer-Encoding: chunked\r\n') + `2c\r\n${get(MANIFEST).slice(0, 44)}\r\n0\r\n\r\n`],
    ['two Host lines', `GET ${MANIFEST} HTTP/1.1\r\nHost: h\r\nHost: other.example\r\n${ACCEPT}\r\n\r\n`],
    ['If-None-Match on the digest', get(MANIFEST, `If-None-Match: "${sha256(manifestBytes)}"\r\n`)],
    ['a folded header line', `GET ${MANIFEST} HTTP/1.1\r\nHost: h\r\nX-Long: a\r\n b\r\n${ACCEPT}\r\n\r\n`],
    ['bare LF line ends', `GET ${MANIFEST} HTTP/1.1\nHost: h\n${ACCEPT}\n\n`],
    ['a space before the colon', `GET ${MANIFEST} HTTP/1.1\r\nHost : h\r\n${ACCEPT}\r\n\r\n`],
    ['HTTP/1.0', `GET ${MANIFEST} HTTP/1.0\r\nHost: h\r\n${ACCEPT}\r\n\r\n`],
    ['a lower-case method', `get ${MANIFEST} HTTP/1.1\r\nHost: h\r\n${ACCEPT}\r\n\r\n`],
    ['an absolute target', `GET http://h${MANIFEST} HTTP/1.1\r\nHost: h\r\n${ACCEPT}\r\n\r\n`],
    ['a byte beyond ASCII in a value', `GET ${MANIFEST} HTTP/1.1\r\nHost: h\r\nUser-Agent: caf\xe9\r\n${ACCEPT}\r\n\r\n`],
    ['another Accept line', get(MANIFEST).replace(ACCEPT, `Accept: ${MediaType.dockerManifest}`)],
    ['a header line beyond 8 KiB', get(MANIFEST, `X-Long: ${'a'.repeat(9000)}\r\n`)],
    ['a request the client ends before its blank line', get(MANIFEST).slice(0, 60)],
  ];
  for (const [what, bytes] of cases) {
    const { answer, nodeRead } = await alike(bytes, what);
    assert.ok(nodeRead > 0 || /^HTTP\/1\.1 4\d\d /.test(answer), `${what}: node:http read it`);
  }
  // The first is the entry's; what follows is node:http's to read (and to refuse, or not, as it does alone).
  await alike(get(MANIFEST) + `GET ${MANIFEST} HTTP/1.1\r\nHost: caf\xe9`, 'a request answered, then one cut off with a byte beyond ASCII');
});

test('Accept lines are joined and Connection: close ends the connection after its answer, as node:http does', async () => {
  const split = ACCEPT.replace(', ', '\r\nAccept: ');
  const cases: Array<[string, string, number]> = [
    ['Accept in two lines', `GET ${MANIFEST} HTTP/1.1\r\nHost: h\r\n${split}\r\n\r\n`, 1],
    ['Connection: close, then a request not read', get(MANIFEST, 'Connection: close\r\n') + get(MANIFEST), 1],
    ['HEAD with Connection: close', `HEAD ${MANIFEST} HTTP/1.1\r\nHost: h\r\n${ACCEPT}\r\nConnection: close\r\n\r\n`, 1],
    ['Connection: keep-alive twice', get(MANIFEST, 'Connection: keep-alive\r\n') + get(MANIFEST, 'connection: Keep-Alive\r\n'), 2],
  ];
  for (const [what, bytes, count] of cases) {
    const { answer, nodeRead } = await alike(bytes, what, 1000);
    assert.equal(nodeRead, 0, `${what}: answered without node:http`);
    const got = answers(answer, Array<boolean>(count).fill(bytes.startsWith('HEAD')));
    assert.deepEqual(
      got.map((a) => a.status),
      Array<number>(count).fill(200),
      what,
    );
  }
});

test('a request split over two reads is answered on the connection; one still unfinished after a second read is node:http\'s', async () => {
  const whole = get(MANIFEST);
  /** Sends the pieces 100 ms apart (so each is its own read) and returns the answers and the requests node:http read. */
  const inPieces = (pieces: string[]) =>
    new Promise<{ answer: string; nodeRead: number }>((resolve, reject) => {
      const before = nodeRequests;
      const socket = net.connect(kontain.port, '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', reject);
      socket.on('close', () => resolve({ answer: Buffer.concat(chunks).toString('latin1'), nodeRead: nodeRequests - before }));
      pieces.forEach((piece, i) => setTimeout(() => socket.write(piece), i * 100));
      setTimeout(() => socket.end(), pieces.length * 100 + 300);
    });
  const split = await inPieces([whole.slice(0, 30), whole.slice(30) + whole.slice(0, 50), whole.slice(50)]);
  assert.equal(split.nodeRead, 0, 'each piece finished the request the one before began');
  for (const a of answers(split.answer, [false, false])) assert.equal(a.body, manifestBytes.toString('latin1'));
  const slow = await inPieces([whole.slice(0, 30), whole.slice(30, 40), whole.slice(40) + whole]);
  assert.equal(slow.nodeRead, 2, 'node:http read both');
  for (const a of answers(slow.answer, [false, false])) assert.equal(a.body, manifestBytes.toString('latin1'));
});

test('a client that sends and does not read is not read from until it takes its answers, then gets them all', async () => {
  const count = 300_000;
  const request = Buffer.from(get(MANIFEST));
  const answered = async () => {
    const text = await (await fetch(`http://127.0.0.1:${kontain.port}/metrics`)).text();
    return Number(/^kontain_requests_total\{service="static",status="200"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };
  const before = await answered();
  const socket = net.connect(kontain.port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.pause();
  socket.write(Buffer.concat(Array<Buffer>(count).fill(request)));
  // Not read, the answers (about 200 MB asked for) fill the socket buffers, and the server stops reading requests.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const stalled = await answered();
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(await answered(), stalled, 'no answers made while the client reads none');
  assert.ok(stalled - before < count, `${stalled - before} of ${count} answered before the server stopped reading`);
  let received = 0;
  const done = new Promise<number>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.on('error', reject);
    socket.on('end', () => resolve(received));
  });
  socket.resume();
  const one = await exchange(kontain.port, get(MANIFEST), { dates: true });
  if (socket.writableLength > 0) await new Promise((resolve) => socket.once('drain', resolve));
  socket.end();
  assert.equal(await done, count * one.length, `all ${count} answers arrived, whole`);
});

test('an idle connection is closed after the headers timeout, and after the keep-alive timeout once answered', async () => {
  const closedAfter = (first?: string) =>
    new Promise<number>((resolve, reject) => {
      const socket = net.connect(kontain.port, '127.0.0.1');
      const started = performance.now();
      socket.on('error', reject);
      socket.on('data', () => undefined);
      socket.on('close', () => resolve(performance.now() - started));
      if (first) socket.write(first);
    });
  const silent = await closedAfter();
  assert.ok(silent >= 900 && silent < 4000, `a silent connection closed after ${silent.toFixed(0)} ms (KONTAIN_HEADERS_TIMEOUT=1)`);
  const answered = await closedAfter(get(MANIFEST));
  assert.ok(answered >= 4900 && answered < 9000, `an answered connection closed after ${answered.toFixed(0)} ms (keep-alive 5 s)`);
});

test('with request log lines on, every request is node:http\'s and logged', async () => {
  log.level = 'info';
  try {
    const before = nodeRequests;
    const logged = lines.length;
    const answer = await exchange(kontain.port, get(MANIFEST), { endAfterMs: 300 });
    assert.equal(nodeRequests - before, 1);
    assert.equal(answers(answer, [false])[0]!.body, manifestBytes.toString('latin1'));
    assert.ok(lines.slice(logged).some((line) => (line.httpRequest as { requestUrl?: string } | undefined)?.requestUrl === MANIFEST));
  } finally {
    log.level = 'warn';
  }
});

test('skopeo pulls through the entry: the base route and the manifest on the connection, the blobs by node:http', async () => {
  const image = `docker://127.0.0.1:${kontain.port}/static/app:v1`;
  const first = path.join(work, 'pull-1');
  await skopeoCopy(image, `oci:${first}:v1`, ['--quiet']);
  const before = nodeRequests;
  const second = path.join(work, 'pull-2');
  await skopeoCopy(image, `oci:${second}:v1`, ['--quiet']);
  const index = JSON.parse(await readFile(path.join(second, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  assert.equal(index.manifests[0]!.digest, sha256(manifestBytes));
  assert.deepEqual((await readdir(path.join(second, 'blobs', 'sha256'))).sort(), (await readdir(path.join(first, 'blobs', 'sha256'))).sort());
  // The config and the layer: what node:http read of the second pull.
  assert.equal(nodeRequests - before, 2, 'node:http read only the blob requests');
});

test('a closing server ends the connections the entry holds', async () => {
  const socket = net.connect(kontain.port, '127.0.0.1');
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('data', () => undefined);
  socket.write(get(MANIFEST));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const started = performance.now();
  closed = true;
  await kontain.close();
  await ended;
  assert.ok(performance.now() - started < 2000, 'closed at once, not after the keep-alive timeout');
});
