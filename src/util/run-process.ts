import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

export interface RunProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Killed (with its whole process group) after this long. */
  timeoutMs: number;
  /** Killed when this aborts (the work is no longer wanted). */
  signal?: AbortSignal;
  /** Each line of stdout and stderr, as it arrives (without the newline; long lines cut). */
  onLine?: (line: string) => void;
  /** Where stdout goes instead of onLine (e.g. a pipe into another program). */
  stdout?: (stream: Readable) => void;
  /** Something to write to the program's stdin. */
  stdin?: (stream: Writable) => void;
}

export interface ProcessOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
}

/** Cut lines longer than this: one line of a log must not hold much memory. */
const MAX_LINE = 4096;

/**
 * Runs a program in its own process group, so a time limit or an abort kills everything
 * it started (build steps fork). Resolves with how it ended; rejects only when it could
 * not be started (ENOENT and the like).
 */
export function runProcess(command: string, args: readonly string[], options: RunProcessOptions): Promise<ProcessOutcome> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        cwd: options.cwd,
        env: options.env,
        stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        detached: true,
      });
    } catch (err) {
      reject(err);
      return;
    }
    let timedOut = false;
    let aborted = false;
    const kill = () => killGroup(child.pid);
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs);
    const onAbort = () => {
      aborted = true;
      kill();
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = () => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    };
    if (options.stdout) options.stdout(child.stdout!);
    else splitLines(child.stdout!, options.onLine);
    splitLines(child.stderr!, options.onLine);
    if (options.stdin) options.stdin(child.stdin!);
    child.once('error', (err) => {
      cleanup();
      reject(err);
    });
    child.once('close', (code, signal) => {
      cleanup();
      resolve({ code, signal, timedOut, aborted });
    });
  });
}

function splitLines(stream: Readable, onLine: ((line: string) => void) | undefined): void {
  if (!onLine) {
    stream.resume();
    return;
  }
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    partial += chunk;
    let newline: number;
    while ((newline = partial.indexOf('\n')) >= 0) {
      onLine(partial.slice(0, Math.min(newline, MAX_LINE)).replace(/\r$/, ''));
      partial = partial.slice(newline + 1);
    }
    if (partial.length > MAX_LINE) {
      onLine(partial.slice(0, MAX_LINE));
      partial = '';
    }
  });
  stream.on('end', () => {
    if (partial) onLine(partial);
  });
}

export function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
