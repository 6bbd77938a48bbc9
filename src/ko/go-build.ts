/**
 * `go build` of one package for one platform, the way ko runs it (ko's gobuild.go):
 * CGO_ENABLED=0, GOOS/GOARCH (+GOARM, GOAMD64 from the platform variant), -trimpath, no
 * VCS stamping, so the binary depends only on the module and the toolchain. Go's build
 * and module caches live under the kontain cache directory and are shared by builds.
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Platform } from '../oci/types.js';
import { killGroup } from '../util/run-process.js';

/** The go command cannot be run. */
export class GoToolchainMissing extends Error {
  constructor(command: string) {
    super(`the ko host needs a Go toolchain: this server cannot run \`${command}\` (install Go, e.g. Debian's golang-go, or set KONTAIN_GO)`);
    this.name = 'GoToolchainMissing';
  }
}

/** The build ran past its time limit and was stopped. */
export class GoBuildTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GoBuildTimeout';
  }
}

/** The compiler refused the package; the message is its output, trimmed. */
export class GoBuildFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GoBuildFailed';
  }
}

export interface GoBuildRequest {
  /** The module's root directory (the build runs there). */
  moduleDir: string;
  importPath: string;
  platform: Platform;
  output: string;
  /** The go command. */
  go: string;
  /** Root of GOPATH, GOMODCACHE, GOCACHE and HOME for the build. */
  cacheDir: string;
  /** GOPROXY for the module's dependencies: the same proxies the module came from. */
  goproxy: readonly string[];
  timeoutMs: number;
}

const MAX_MESSAGE_LINES = 20;
const MAX_MESSAGE_CHARS = 2000;
const MAX_CAPTURED = 64 * 1024;

export async function goBuild(request: GoBuildRequest): Promise<void> {
  const home = path.join(request.cacheDir, 'home');
  await mkdir(home, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    GOPATH: path.join(request.cacheDir, 'gopath'),
    GOMODCACHE: path.join(request.cacheDir, 'gopath', 'pkg', 'mod'),
    GOCACHE: path.join(request.cacheDir, 'build'),
    GOPROXY: request.goproxy.join(','),
    // Dependencies are fetched as go.mod asks; go.sum (and GOSUMDB, as the environment
    // sets it) verify them. -toolexec and the like cannot come in through GOFLAGS.
    GOFLAGS: '-mod=mod',
    GOTOOLCHAIN: 'local',
    // A go.work inside the module must not turn the build into a workspace build (and
    // with -mod=mod it would fail); go ignores go.work in downloaded modules too.
    GOWORK: 'off',
    ...platformEnv(request.platform),
  };
  const args = ['build', '-trimpath', '-buildvcs=false', '-o', request.output, request.importPath];
  await new Promise<void>((resolve, reject) => {
    const child = spawn(request.go, args, { cwd: request.moduleDir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    const capture = (chunk: Buffer) => {
      if (output.length < MAX_CAPTURED) output += chunk.toString('utf8');
    };
    child.stdout.on('data', capture);
    child.stderr.on('data', capture);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, request.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject((err as NodeJS.ErrnoException).code === 'ENOENT' ? new GoToolchainMissing(request.go) : err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return reject(new GoBuildTimeout(`go build of ${request.importPath} for ${platformName(request.platform)} took longer than ${Math.round(request.timeoutMs / 1000)} s and was stopped`));
      if (code === 0) return resolve();
      reject(new GoBuildFailed(`go build of ${request.importPath} for ${platformName(request.platform)} failed (${signal ?? `exit ${code}`}):\n${trimMessage(output)}`));
    });
  });
}

/** GOOS, GOARCH and the variant knobs, as ko sets them. */
export function platformEnv(platform: Platform): Record<string, string> {
  const env: Record<string, string> = { CGO_ENABLED: '0', GOOS: platform.os, GOARCH: platform.architecture };
  const variant = platform.variant?.replace(/^v/, '');
  if (platform.architecture === 'arm' && variant) {
    const n = Number(variant);
    // ko: v8 is built as 7; below 5 Go has no setting.
    if (n >= 5) env.GOARM = String(Math.min(n, 7));
  }
  if (platform.architecture === 'amd64' && variant && /^[1-4]$/.test(variant)) env.GOAMD64 = `v${variant}`;
  return env;
}

export function platformName(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** The first lines of the compiler's output, bounded, for an error a client will print. */
export function trimMessage(output: string): string {
  const lines = output.split('\n').map((l) => l.trimEnd()).filter(Boolean);
  let text = lines.slice(0, MAX_MESSAGE_LINES).join('\n');
  if (lines.length > MAX_MESSAGE_LINES) text += `\n… (${lines.length - MAX_MESSAGE_LINES} more lines)`;
  return text.length > MAX_MESSAGE_CHARS ? text.slice(0, MAX_MESSAGE_CHARS) + '…' : text;
}
