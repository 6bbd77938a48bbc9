/**
 * A loopback git server for tests: Debian's `git daemon` serving repositories the test
 * makes under `<root>/<owner>/<repo>`, with commits whose author and dates are fixed so
 * runs are repeatable. Stopped by `stop()`, or killed when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec } from './tools.js';
import { freePort } from './upstream-registry.js';

export interface GitServer {
  /** `git://127.0.0.1:PORT`, for KONTAIN_GIT_BASE. */
  base: string;
  /** `127.0.0.1:PORT`, for KONTAIN_INSECURE_REGISTRIES. */
  host: string;
  root: string;
  /** Creates `<owner>/<repo>` with a first commit of `files` on `main`; returns the commit. */
  createRepository(owner: string, repo: string, files: Record<string, string>): Promise<string>;
  /** Commits `files` (added or replaced) on the repository's current branch. */
  commit(owner: string, repo: string, files: Record<string, string>, message?: string): Promise<string>;
  tag(owner: string, repo: string, name: string): Promise<void>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

let clock = 1_700_000_000;

export async function startGitServer(): Promise<GitServer> {
  const root = await mkdtemp(path.join(tmpdir(), 'kontain-git-'));
  const port = await freePort();
  const child = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${root}`, '--listen=127.0.0.1', `--port=${port}`, root], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: root, GIT_CONFIG_NOSYSTEM: '1' },
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  await waitForPort(port);

  const git = async (repoDir: string, args: string[]) => {
    clock += 60;
    const date = `${clock} +0000`;
    const env = ['-c', 'user.name=Test', '-c', 'user.email=test@example.com', '-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false'];
    return exec('env', [`GIT_AUTHOR_DATE=${date}`, `GIT_COMMITTER_DATE=${date}`, 'HOME=' + root, 'GIT_CONFIG_NOSYSTEM=1', 'git', ...env, '-C', repoDir, ...args]);
  };
  const writeFiles = async (repoDir: string, files: Record<string, string>) => {
    for (const [name, content] of Object.entries(files)) {
      const file = path.join(repoDir, name);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, content);
    }
  };
  const commit = async (owner: string, repo: string, files: Record<string, string>, message = 'change') => {
    const repoDir = path.join(root, owner, repo);
    await writeFiles(repoDir, files);
    await git(repoDir, ['add', '-A']);
    await git(repoDir, ['commit', '-q', '-m', message]);
    return (await git(repoDir, ['rev-parse', 'HEAD'])).stdout.trim();
  };
  return {
    base: `git://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    root,
    async createRepository(owner, repo, files) {
      const repoDir = path.join(root, owner, repo);
      await mkdir(repoDir, { recursive: true });
      await git(repoDir, ['init', '-q', '-b', 'main']);
      // Fetching a commit by hash that is no longer a branch tip (an old commit).
      await git(repoDir, ['config', 'uploadpack.allowAnySHA1InWant', 'true']);
      return commit(owner, repo, files, 'first');
    },
    commit,
    async tag(owner, repo, name) {
      await git(path.join(root, owner, repo), ['tag', '-a', '-m', name, name]);
    },
    async stop() {
      child.kill('SIGTERM');
      await rm(root, { recursive: true, force: true });
    },
  };
}

async function waitForPort(port: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`git daemon did not listen on ${port}`);
}
