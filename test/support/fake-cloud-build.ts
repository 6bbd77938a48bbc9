/**
 * A tiny stand-in for the Cloud Build API, for tests only.
 *
 * Why it exists: there is no Cloud Build emulator, and the Cloud Build executor should be
 * tested through the real `@google-cloud/cloudbuild` client. With `fallback: true` the
 * client speaks the REST form of the API; these are the calls the executor makes:
 *
 *   POST /v1/projects/P/builds[?...]                   body: the Build → an Operation whose
 *   POST /v1/projects/P/locations/L/builds             metadata (BuildOperationMetadata) holds the build
 *   GET  /v1/projects/P/builds/ID  |  /v1/projects/P/locations/L/builds/ID  → the Build
 *   POST /v1/projects/P/builds/ID:cancel               → the Build
 *
 * Builds run here, as Cloud Build would run them, against a fake GCS: the storage source
 * is read from the bucket and unpacked as the workspace; each step's args get Cloud
 * Build's `$$` → `$` substitution and run with the step's entrypoint and env in the
 * workspace, on this machine's programs (the step's image is recorded, not pulled);
 * artifacts and the log (`log-<id>.txt`) are written back to the bucket. Status moves
 * QUEUED → WORKING → SUCCESS | FAILURE | TIMEOUT | CANCELLED.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FakeGcs } from './fake-gcs.js';

export interface FakeBuild {
  id: string;
  projectId: string;
  status: string;
  statusDetail?: string;
  /** The Build as the client sent it (protobuf JSON). */
  request: Record<string, unknown>;
  log: string[];
}

export interface FakeCloudBuild {
  /** Base URL for KONTAIN_CLOUD_BUILD_ENDPOINT. */
  endpoint: string;
  builds: FakeBuild[];
  /** Every request, in order. */
  requests: Array<{ method: string; path: string }>;
  close(): Promise<void>;
}

interface Step {
  name: string;
  entrypoint?: string;
  args?: string[];
  env?: string[];
}

const CREATE = /^\/v1\/projects\/([^/]+)(?:\/locations\/([^/]+))?\/builds$/;
const BUILD = /^\/v1\/projects\/([^/]+)(?:\/locations\/([^/]+))?\/builds\/([^/:]+)(:cancel)?$/;

export async function startFakeCloudBuild(gcs: FakeGcs): Promise<FakeCloudBuild> {
  const builds: FakeBuild[] = [];
  const requests: FakeCloudBuild['requests'] = [];
  const running = new Map<string, { kill: () => void }>();

  const resource = (build: FakeBuild) => ({ ...build.request, id: build.id, projectId: build.projectId, status: build.status, statusDetail: build.statusDetail ?? '' });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({ method: req.method ?? '', path: url.pathname });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const create = CREATE.exec(url.pathname);
    if (req.method === 'POST' && create) {
      const request = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
      const build: FakeBuild = { id: randomUUID(), projectId: create[1]!, status: 'QUEUED', request, log: [] };
      builds.push(build);
      void run(build);
      json(res, 200, {
        name: `operations/build/${build.projectId}/${Buffer.from(build.id).toString('base64')}`,
        metadata: { '@type': 'type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata', build: resource(build) },
      });
      return;
    }
    const one = BUILD.exec(url.pathname);
    const build = one && builds.find((b) => b.id === one[3] && b.projectId === one[1]);
    if (one && build && req.method === 'GET' && !one[4]) {
      json(res, 200, resource(build));
      return;
    }
    if (one && build && req.method === 'POST' && one[4]) {
      running.get(build.id)?.kill();
      if (!['SUCCESS', 'FAILURE', 'TIMEOUT'].includes(build.status)) build.status = 'CANCELLED';
      json(res, 200, resource(build));
      return;
    }
    json(res, 404, { error: { code: 404, message: `no such build or route ${url.pathname}`, status: 'NOT_FOUND' } });
  }

  async function run(build: FakeBuild): Promise<void> {
    const workspace = await mkdtemp(path.join(tmpdir(), 'kontain-fake-cloud-build-'));
    const request = build.request as { source?: { storageSource?: { bucket: string; object: string } }; steps?: Step[]; artifacts?: { objects?: { location: string; paths: string[] } }; logsBucket?: string; timeout?: string };
    const finish = async (status: string, detail?: string) => {
      if (build.status !== 'CANCELLED') {
        build.status = status;
        build.statusDetail = detail;
      }
      if (request.logsBucket) {
        const { bucket, name } = gsPath(request.logsBucket);
        gcs.write(bucket, `${name}/log-${build.id}.txt`, Buffer.from(build.log.join('\n') + '\n'), 'text/plain');
      }
      await rm(workspace, { recursive: true, force: true });
    };
    try {
      const source = request.source?.storageSource;
      const tarball = source && gcs.read(source.bucket, source.object);
      if (!tarball) return await finish('FAILURE', 'the storage source does not exist');
      await writeFile(path.join(workspace, '.source.tgz'), tarball);
      await mkdir(path.join(workspace, 'ws'));
      await exec('tar', ['-xzf', path.join(workspace, '.source.tgz'), '-C', path.join(workspace, 'ws')], workspace, {}, () => undefined, 60_000);
      build.status = 'WORKING';
      const timeoutMs = (Number(/^(\d+)s$/.exec(request.timeout ?? '')?.[1]) || 600) * 1000;
      for (const [index, step] of (request.steps ?? []).entries()) {
        const env = Object.fromEntries((step.env ?? []).map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
        await mkdir(path.join(workspace, `tmp-${index}`));
        const args = (step.args ?? []).map((arg) => arg.replaceAll('$$', '$'));
        const program = step.entrypoint ?? step.name;
        const code = await exec(program, args, path.join(workspace, 'ws'), { ...env, TMPDIR: path.join(workspace, `tmp-${index}`) }, (line) => build.log.push(`Step #${index}: ${line}`), timeoutMs, (kill) => running.set(build.id, { kill }));
        if (code === 'timeout') return await finish('TIMEOUT', `build step ${index} timed out`);
        if (code !== 0) return await finish('FAILURE', `Build step ${index} "${step.name}" failed: step exited with non-zero status: ${code}`);
      }
      const artifacts = request.artifacts?.objects;
      if (artifacts) {
        const { bucket, name } = gsPath(artifacts.location);
        for (const file of artifacts.paths) {
          gcs.write(bucket, `${name.replace(/\/?$/, '/')}${path.basename(file)}`, await readFile(path.join(workspace, 'ws', file)));
        }
      }
      await finish('SUCCESS');
    } catch (err) {
      build.log.push(`fake cloud build: ${(err as Error).message}`);
      await finish('INTERNAL_ERROR', (err as Error).message);
    } finally {
      running.delete(build.id);
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => json(res, 500, { error: { code: 500, message: err.message, status: 'INTERNAL' } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    builds,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const { kill } of running.values()) kill();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function gsPath(url: string): { bucket: string; name: string } {
  const match = /^gs:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!match) throw new Error(`not a gs:// URL: ${url}`);
  return { bucket: match[1]!, name: match[2]!.replace(/\/$/, '') };
}

function exec(
  program: string,
  args: string[],
  cwd: string,
  env: Record<string, string>,
  onLine: (line: string) => void,
  timeoutMs: number,
  onStart?: (kill: () => void) => void,
): Promise<number | 'timeout'> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const kill = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    };
    onStart?.(kill);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, timeoutMs);
    let partial = '';
    const take = (chunk: Buffer) => {
      partial += chunk.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(onLine);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (partial) onLine(partial);
      resolve(timedOut ? 'timeout' : (code ?? 1));
    });
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
