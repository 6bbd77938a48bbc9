/**
 * A real upstream registry for tests: Debian's `docker-registry` (the CNCF distribution
 * registry, 2.8.x) on a free loopback port, with its own temp storage and generated
 * config; optionally behind htpasswd (Basic) or token (Bearer) auth, or as a pull-through
 * proxy of another registry. Every registry started is killed by `stop()`, and as a last
 * resort when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec } from './tools.js';

export interface UpstreamRegistryOptions {
  /** Basic auth with one user (bcrypt htpasswd file generated with `htpasswd -Bbn`). */
  htpasswd?: { username: string; password: string };
  /** Bearer token auth; `TokenServer.registryAuth` has exactly this shape. */
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** Pull-through cache of another registry. */
  proxy?: { remoteUrl: string; username?: string; password?: string };
  /** Milliseconds to wait for the registry to answer /v2/. */
  startTimeoutMs?: number;
}

export interface LoggedRequest {
  method: string;
  uri: string;
  status: number;
}

export interface UpstreamRegistry {
  /** `127.0.0.1:PORT`, the registry part of references. */
  host: string;
  url: string;
  /** Root of the filesystem storage driver. */
  storageDir: string;
  logPath: string;
  /** The registry's process (benchmarks read its CPU time). */
  pid: number;
  /** Where the registry keeps a blob's bytes on disk (to corrupt it in tests). */
  blobDataPath(digest: string): string;
  /** Requests the registry has logged as completed (routes it does not have are not logged). */
  requests(): Promise<LoggedRequest[]>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A port that was free a moment ago (the registry takes a port number, not a socket). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function configYaml(opts: UpstreamRegistryOptions, storageDir: string, port: number, htpasswdPath: string | undefined): string {
  const q = (s: string) => JSON.stringify(s); // JSON strings are valid YAML scalars
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  formatter: json',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${q(storageDir)}`,
    '  delete:',
    '    enabled: true',
    // No descriptor cache: a blob edited on disk is served as it now is.
    'http:',
    `  addr: ${q(`127.0.0.1:${port}`)}`,
    `  secret: ${q(Math.random().toString(36).slice(2))}`,
  ];
  if (htpasswdPath) {
    lines.push('auth:', '  htpasswd:', '    realm: kontain-test', `    path: ${q(htpasswdPath)}`);
  } else if (opts.token) {
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${q(opts.token.realm)}`,
      `    service: ${q(opts.token.service)}`,
      `    issuer: ${q(opts.token.issuer)}`,
      `    rootcertbundle: ${q(opts.token.rootCertBundle)}`,
    );
  }
  if (opts.proxy) {
    lines.push('proxy:', `  remoteurl: ${q(opts.proxy.remoteUrl)}`);
    if (opts.proxy.username) lines.push(`  username: ${q(opts.proxy.username)}`, `  password: ${q(opts.proxy.password ?? '')}`);
  }
  return lines.join('\n') + '\n';
}

async function waitUntilServing(url: string, child: ChildProcess, logPath: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `exited with ${signal ?? code}`));
  while (Date.now() < deadline) {
    if (exited) break;
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const log = await readFile(logPath, 'utf8').catch(() => '');
  throw new Error(`docker-registry did not start (${exited ?? `no answer within ${timeoutMs} ms`}):\n${log}`);
}

export async function startUpstreamRegistry(opts: UpstreamRegistryOptions = {}): Promise<UpstreamRegistry> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-upstream-'));
  const storageDir = path.join(dir, 'storage');
  const logPath = path.join(dir, 'registry.log');
  let htpasswdPath: string | undefined;
  if (opts.htpasswd) {
    htpasswdPath = path.join(dir, 'htpasswd');
    const { stdout } = await exec('htpasswd', ['-Bbn', opts.htpasswd.username, opts.htpasswd.password]);
    await writeFile(htpasswdPath, stdout);
  }

  // A port can be taken between freePort() and the registry binding it: try a few.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const configPath = path.join(dir, 'config.yml');
    await writeFile(configPath, configYaml(opts, storageDir, port, htpasswdPath));
    const logFd = openSync(logPath, 'w');
    // A clean environment: REGISTRY_* variables would override the config.
    const child = spawn('docker-registry', ['serve', configPath], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    running.add(child);
    child.once('exit', () => running.delete(child));
    const host = `127.0.0.1:${port}`;
    const url = `http://${host}`;
    try {
      await waitUntilServing(url, child, logPath, opts.startTimeoutMs ?? 15_000);
    } catch (err) {
      await stopChild(child);
      const log = await readFile(logPath, 'utf8').catch(() => '');
      if (attempt < 3 && /address already in use/.test(log)) continue;
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      host,
      url,
      storageDir,
      logPath,
      pid: child.pid!,
      blobDataPath: (digest) => {
        const [algorithm, hex] = digest.split(':') as [string, string];
        return path.join(storageDir, 'docker/registry/v2/blobs', algorithm, hex.slice(0, 2), hex, 'data');
      },
      requests: async () => parseLog(await readFile(logPath, 'utf8')),
      stop: async () => {
        await stopChild(child);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}

function parseLog(text: string): LoggedRequest[] {
  const out: LoggedRequest[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (typeof entry['http.request.method'] === 'string' && typeof entry['http.response.status'] === 'number') {
        out.push({ method: entry['http.request.method'], uri: String(entry['http.request.uri']), status: entry['http.response.status'] });
      }
    } catch {
      // not a log entry
    }
  }
  return out;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
