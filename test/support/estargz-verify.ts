/**
 * The independent eStargz checker (test/estargz-verify/main.go), built once per process
 * with Debian's Go toolchain against Debian's copy of the reference library:
 *
 *   apt-get install golang-go golang-github-containerd-stargz-snapshotter-dev
 *   GO111MODULE=off GOPATH=/usr/share/gocode go build -o <bin> ./test/estargz-verify
 *
 * GOPATH mode, because that is how Debian ships Go libraries (/usr/share/gocode/src) and
 * it needs no module download.
 */
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { exec } from './tools.js';

const run = promisify(execFile);
const GOPATH = '/usr/share/gocode';
const LIBRARY = path.join(GOPATH, 'src/github.com/containerd/stargz-snapshotter/estargz');
export const ESTARGZ_VERIFY_PACKAGES = ['golang-go', 'golang-github-containerd-stargz-snapshotter-dev'];

export interface VerifiedFile {
  name: string;
  type: string;
  size: number;
  mode: number;
  linkName?: string;
  digest?: string;
  chunks?: number;
  /** For a hardlink: the entry it resolves to. */
  target?: string;
}

export interface VerifySummary {
  tocDigest: string;
  tocOffset: number;
  blobSize: number;
  files: VerifiedFile[];
}

export interface EstargzVerifier {
  /** Resolves with the summary when the blob passes; rejects with the checker's message when not. */
  verify(blobPath: string, tocDigest: string): Promise<VerifySummary>;
  /** Writes `tarPath` as eStargz with the reference writer (see main.go) into `outPath`. */
  reference(chunkSize: number, tarPath: string, outPath: string): Promise<{ tocDigest: string; diffID: string }>;
}

/** The directory holding test/estargz-verify (tests run from src via tsx, or from dist/). */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'test', 'estargz-verify', 'main.go'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('test/estargz-verify/main.go not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

let built: Promise<EstargzVerifier | string> | undefined;

/** The verifier, or a reason to skip when Go or the library is not installed. */
export function estargzVerifier(): Promise<EstargzVerifier | string> {
  built ??= build();
  return built;
}

async function build(): Promise<EstargzVerifier | string> {
  const missing = `install Debian packages ${ESTARGZ_VERIFY_PACKAGES.join(' ')} (test/setup.sh does)`;
  try {
    await run('go', ['version']);
  } catch {
    return `go is not on PATH: ${missing}`;
  }
  if (!existsSync(LIBRARY)) return `${LIBRARY} is missing: ${missing}`;

  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-estargz-verify-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const binary = path.join(dir, 'estargz-verify');
  const env = {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH,
    GOFLAGS: '',
    GOPROXY: 'off',
    // A shared cache makes every build after the first take a fraction of a second.
    GOCACHE: process.env.GOCACHE ?? path.join(tmpdir(), 'kontain-go-build-cache'),
  };
  try {
    await run('go', ['build', '-o', binary, '.'], { cwd: path.join(projectRoot(), 'test', 'estargz-verify'), env, timeout: 300_000 });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`building test/estargz-verify failed: ${e.message}\n${e.stderr ?? ''}`);
  }

  return {
    async verify(blobPath, tocDigest) {
      const { stdout } = await exec(binary, [blobPath, tocDigest]);
      return JSON.parse(stdout) as VerifySummary;
    },
    async reference(chunkSize, tarPath, outPath) {
      const { stdout } = await exec(binary, ['reference', String(chunkSize), tarPath, outPath]);
      return JSON.parse(stdout) as { tocDigest: string; diffID: string };
    },
  };
}
