/**
 * Runs one Nix command (nix-build, nix-instantiate, nix) the way the ko host runs `go
 * build`: in its own process group, killed as a group at the time limit or when the
 * caller gives up, with its output captured up to a bound so a failure can quote Nix's
 * last lines.
 */
import { spawn } from 'node:child_process';

/** Nix is not installed on this server. */
export class NixMissing extends Error {
  constructor(command: string) {
    super(`the nix host needs Nix: this server cannot run \`${command}\` (install Debian's nix-bin, or the Nix installer)`);
    this.name = 'NixMissing';
  }
}

/** The command ran past its time limit and was stopped. */
export class NixTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NixTimeout';
  }
}

/** Nix refused (evaluation error, failed builder); the message ends with Nix's last lines. */
export class NixFailed extends Error {
  constructor(
    message: string,
    /** Nix's own last lines, for matching (unknown attribute, …). */
    readonly output: string,
  ) {
    super(message);
    this.name = 'NixFailed';
  }
}

export interface NixRun {
  command: string;
  args: string[];
  /** What is being done, for messages: `nix-build of hello, jq`. */
  what: string;
  timeoutMs: number;
  signal?: AbortSignal;
  cwd?: string;
}

const MAX_STDOUT = 16 * 1024 * 1024;
const MAX_STDERR = 256 * 1024;
const LAST_LINES = 25;
const MAX_MESSAGE_CHARS = 3000;

/** stdout of a successful run. */
export async function runNix(run: NixRun): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = spawn(run.command, run.args, { cwd: run.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let stopped: 'timeout' | 'aborted' | 'too-much' | undefined;
    const stop = (why: NonNullable<typeof stopped>) => {
      stopped ??= why;
      killGroup(child.pid);
    };
    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > MAX_STDOUT) return stop('too-much');
      out.push(chunk);
    });
    // Keep the tail of stderr: the failing builder's last lines are what a user needs.
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString('utf8');
      if (err.length > MAX_STDERR) err = err.slice(-MAX_STDERR / 2);
    });
    const timer = setTimeout(() => stop('timeout'), run.timeoutMs);
    const onAbort = () => stop('aborted');
    run.signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      run.signal?.removeEventListener('abort', onAbort);
    };
    child.once('error', (e) => {
      done();
      reject((e as NodeJS.ErrnoException).code === 'ENOENT' ? new NixMissing(run.command) : e);
    });
    child.once('close', (code, signal) => {
      done();
      if (stopped === 'timeout') return reject(new NixTimeout(`${run.what} took longer than ${Math.round(run.timeoutMs / 1000)} s and was stopped`));
      if (stopped === 'aborted') return reject(run.signal?.reason ?? new Error(`${run.what} was cancelled`));
      if (stopped === 'too-much') return reject(new NixFailed(`${run.what} printed more than ${MAX_STDOUT} bytes`, ''));
      if (code === 0) return resolve(Buffer.concat(out).toString('utf8'));
      const tail = lastLines(err);
      reject(new NixFailed(`${run.what} failed (${signal ?? `exit ${code}`}):\n${tail}`, tail));
    });
  });
}

/** The last lines of Nix's output, bounded, for an error a client will print. */
export function lastLines(output: string): string {
  const lines = output.split('\n').map((l) => l.trimEnd()).filter(Boolean);
  let text = lines.slice(-LAST_LINES).join('\n');
  if (lines.length > LAST_LINES) text = `… (${lines.length - LAST_LINES} lines before)\n` + text;
  return text.length > MAX_MESSAGE_CHARS ? '…' + text.slice(-MAX_MESSAGE_CHARS) : text;
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
