// A kontain server child whose JSON log lines a test can wait for (the viz limit tests).
// kontain-process.ts starts other commands and shells; server-process.ts the bundle.
/**
 * `kontain serve` in a child process, for tests where the server must not share the test's
 * event loop (a frozen server must not freeze the test that checks it) or where its log
 * is what is checked. Its JSON log lines are kept in order; `waitForLog` waits for one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { nodeArgsFor, siblingModule } from './node-child.js';

/** One log line; kontain's logger writes its text under `message` (Cloud Logging's name). */
export type LogRecord = Record<string, unknown> & { message?: string };

export interface KontainProcess {
  child: ChildProcess;
  /** `127.0.0.1:PORT` */
  address: string;
  url: string;
  /** Every JSON line logged so far, in order. */
  logs: LogRecord[];
  /**
   * The first log record (from index `from` on) that matches; rejects, with the last lines
   * logged, if the process exits first or none comes within `giveUpMs` (a guard against a
   * hanging test, not a timing assertion).
   */
  waitForLog(match: (record: LogRecord) => boolean, what: string, from?: number, giveUpMs?: number): Promise<LogRecord>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts kontain on a free loopback port with a fresh store (unless `env` names one). */
export async function startKontainProcess(env: Record<string, string> = {}): Promise<KontainProcess> {
  const storeDir = env.KONTAIN_STORE ? undefined : await mkdtemp(path.join(tmpdir(), 'kontain-store-'));
  const { args, path: entry } = nodeArgsFor(siblingModule(import.meta.url, '../../cmd/kontain'));
  const child = spawn(process.execPath, [...args, entry, 'serve'], {
    env: { ...process.env, PORT: '0', KONTAIN_LOG_LEVEL: 'info', ...(storeDir ? { KONTAIN_STORE: storeDir } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const logs: LogRecord[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
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
    running.delete(child);
    for (const wake of waiters) wake();
  });

  const waitForLog = (match: (record: LogRecord) => boolean, what: string, from = 0, giveUpMs = 90_000): Promise<LogRecord> =>
    new Promise((resolve, reject) => {
      const fail = (why: string) => {
        waiters.delete(check);
        clearTimeout(timer);
        reject(new Error(`kontain ${why} without logging ${what}; stderr: ${stderr}; last lines: ${JSON.stringify(logs.slice(-20))}`));
      };
      const timer = setTimeout(() => fail(`went ${giveUpMs / 1000} s`), giveUpMs);
      const check = () => {
        const found = logs.slice(from).find(match);
        if (found) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          fail('exited');
        }
      };
      waiters.add(check);
      check();
    });

  const started = await waitForLog((r) => r.message === 'kontain serving', 'that it is serving', 0, 60_000).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  const address = `127.0.0.1:${started.port as number}`;
  return {
    child,
    address,
    url: `http://${address}`,
    logs,
    waitForLog,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      if (storeDir) await rm(storeDir, { recursive: true, force: true });
    },
  };
}
