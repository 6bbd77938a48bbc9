import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** Starts `kontain serve` as a child process (so its memory can be read) and waits for its port. */
export async function startServerProcess(env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const entry = fileURLToPath(new URL('../cmd/kontain.js', import.meta.url));
  const child = spawn(process.execPath, [entry, 'serve'], {
    env: { ...process.env, PORT: '0', KONTAIN_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"port":(\d+)/.exec(output);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${output}`)));
  });
  return { child, port };
}

/** Peak resident set size of a process, in bytes (Linux VmHWM). */
export async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : NaN;
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; result: T }> {
  const start = process.hrtime.bigint();
  const result = await fn();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, result };
}

export const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** CPU seconds (user + system) a process has used so far (Linux /proc, USER_HZ = 100). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs a benchmark's main and exits: 0 when it finished, 1 with the error printed when not. */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
