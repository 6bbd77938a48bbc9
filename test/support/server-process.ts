import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The production entry: the bundle `npm run build` writes (scripts/bundle.mjs). */
export const BUNDLE_ENTRY = fileURLToPath(new URL('../../bundle/kontain.js', import.meta.url));

/** package.json's `start` script: `npm run build && node [flags] dist/bundle/kontain.js serve`. */
export const START_SCRIPT: string = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).scripts.start;

/**
 * The Node flags `npm start` gives the server (the Docker image's CMD gives the same; a
 * test checks), so that tests and benchmarks run the server as production does.
 */
export const SERVER_NODE_FLAGS: string[] = startFlags(START_SCRIPT);

function startFlags(script: string): string[] {
  const match = /\bnode ((?:--\S+ )*)dist\/bundle\/kontain\.js serve$/.exec(script);
  if (!match) throw new Error(`package.json's start script is not "… node [flags] dist/bundle/kontain.js serve": ${script}`);
  return match[1]!.split(' ').filter(Boolean);
}

/** One log line; kontain's logger writes its text under `message` (Cloud Logging's name). */
export type LogRecord = Record<string, unknown> & { message?: string };

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Everything the server has written to stdout so far (its JSON log lines). */
  output(): string;
  /** Every log line so far, parsed, in order (a line that is not JSON as its `message`). */
  logs: LogRecord[];
  /**
   * Resolves with the first log line from index `from` on (default: the start) that `match`
   * accepts; rejects, with the last lines logged, if the server exits first.
   */
  logLine(match: (line: LogRecord) => boolean, from?: number): Promise<LogRecord>;
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
  // The port is read from the "kontain serving" line, an info line: the level is info
  // unless the test asks for a more verbose one.
  const level = env.KONTAIN_LOG_LEVEL === 'debug' || env.KONTAIN_LOG_LEVEL === 'trace' ? env.KONTAIN_LOG_LEVEL : 'info';
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...(options.nodeArgs ?? []), options.entry ?? BUNDLE_ENTRY, 'serve'], {
    env: { ...process.env, PORT: '0', ...env, KONTAIN_LOG_LEVEL: level },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  const logs: LogRecord[] = [];
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogRecord);
    } catch {
      logs.push({ message: line });
    }
    for (const wake of waiters) wake();
  });
  const exited = once(child, 'exit');
  child.once('exit', () => {
    for (const wake of waiters) wake();
  });
  const logLine = (match: (line: LogRecord) => boolean, from = 0) =>
    new Promise<LogRecord>((resolve, reject) => {
      const check = () => {
        const found = logs.slice(from).find(match);
        if (found) {
          waiters.delete(check);
          resolve(found);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          waiters.delete(check);
          reject(new Error(`the server exited before logging the line waited for; last lines: ${JSON.stringify(logs.slice(-20))}`));
        }
      };
      waiters.add(check);
      check();
    });
  let port: number;
  try {
    port = (await logLine((line) => line.message === 'kontain serving')).port as number;
  } catch (err) {
    throw new Error(`server exited before serving: ${output}`, { cause: err });
  }
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    logs,
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
