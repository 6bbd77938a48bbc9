import { spawn, type ChildProcess } from 'node:child_process';
import { nodeArgsFor, siblingModule } from './node-child.js';

export { freePort } from './upstream-registry.js';

/** `kontain serve` (or another command) in a child process, with its output collected. */
export interface KontainProcess {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far (stdout only while it is piped). */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal's name); rejects after `ms`. */
  exited(ms: number): Promise<number | string>;
  kill(): void;
}

export interface KontainProcessOptions {
  env: Record<string, string>;
  args?: string[];
  /** A shell line run before node (`ulimit -n 200`); node is exec'd from it. */
  shellPrefix?: string;
}

/** Starts the kontain executable with the given environment (KONTAIN_LOG_LEVEL info unless set). */
export function startKontainProcess(options: KontainProcessOptions): KontainProcess {
  const { args, path: entry } = nodeArgsFor(siblingModule(import.meta.url, '../../cmd/kontain'));
  const argv = [...args, entry, ...(options.args ?? ['serve'])];
  const env = { ...process.env, KONTAIN_LOG_LEVEL: 'info', ...options.env };
  const child = options.shellPrefix
    ? spawn('sh', ['-c', `${options.shellPrefix} && exec "$0" "$@"`, process.execPath, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exit = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited: (ms) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`kontain did not exit within ${ms / 1000} s; stderr: ${err.slice(-2000)}`)), ms);
        void exit.then((code) => {
          clearTimeout(timer);
          resolve(code);
        });
      }),
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Polls `check` until it holds; throws after `ms` naming `what`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
