import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** The production entry: the bundle `npm run build` writes (scripts/bundle.mjs). */
export const BUNDLE_ENTRY = fileURLToPath(new URL('../../bundle/kontain.js', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  /** Everything the server has written to stdout so far (its JSON log lines). */
  output(): string;
  /** Resolves with the first log line (parsed) that `match` accepts, from the start; rejects if the server exits first. */
  logLine(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** SIGTERM (or `signal`), then waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `kontain serve` as a child process (so its memory, modules and signals are its
 * own) on a free port, and resolves once it logs the port it listens on.
 */
export async function startServerProcess(
  env: Record<string, string>,
  options: { entry?: string; nodeArgs?: string[] } = {},
): Promise<ServerProcess> {
  // The port is read from the "kontain serving" line, an info line: the level stays info.
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.entry ?? BUNDLE_ENTRY, 'serve'], {
    env: { ...process.env, PORT: '0', ...env, KONTAIN_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    for (const wake of waiters) wake();
  });
  const exited = once(child, 'exit');
  const logLine = (match: (line: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        for (const text of output.split('\n')) {
          let line: Record<string, unknown>;
          try {
            line = JSON.parse(text) as Record<string, unknown>;
          } catch {
            continue; // not a (complete) log line
          }
          if (match(line)) {
            waiters.delete(check);
            resolve(line);
            return;
          }
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          waiters.delete(check);
          reject(new Error('the server exited before logging the line waited for'));
        }
      };
      waiters.add(check);
      void exited.then(check);
      check();
    });
  const port = await new Promise<number>((resolve, reject) => {
    const onData = () => {
      const match = /"port":(\d+)/.exec(output);
      if (match) {
        child.stdout!.off('data', onData);
        resolve(Number(match[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${output}`)));
  });
  return {
    child,
    port,
    output: () => output,
    logLine,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await exited;
      }
    },
  };
}

/** Peak resident set size of a process, in bytes (Linux VmHWM). */
export async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : NaN;
}
