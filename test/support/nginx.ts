import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec } from './tools.js';
import { freePort } from './upstream-registry.js';

export interface RunningNginx {
  /** `127.0.0.1:PORT` */
  address: string;
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Debian installs nginx in /usr/sbin, which a user's PATH may leave out. */
export const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

/**
 * Debian's nginx serving `include` (a file of locations) on loopback, as a non-daemon
 * with its own prefix, pid, logs and temp paths, so it needs no root and touches nothing
 * of the machine's own nginx. `serverLines` go into the server block before the include
 * (`set $registry_root …;`). The configuration is checked with `nginx -t` first.
 */
export async function startNginx(include: string, options: { serverLines?: string[]; workers?: number } = {}): Promise<RunningNginx> {
  const prefix = await mkdtemp(path.join(tmpdir(), 'kontain-nginx-'));
  await mkdir(path.join(prefix, 'tmp'));
  const port = await freePort();
  const conf = path.join(prefix, 'nginx.conf');
  const temp = (name: string) => `${name}_temp_path ${path.join(prefix, 'tmp', name)};`;
  await writeFile(path.join(prefix, 'registry.conf'), include);
  await writeFile(
    conf,
    [
      // As root, workers would drop to nobody, who cannot read the tests' private temp directories.
      ...(process.getuid?.() === 0 ? ['user root;'] : []),
      `worker_processes ${options.workers ?? 1};`,
      `pid ${path.join(prefix, 'nginx.pid')};`,
      `error_log ${path.join(prefix, 'error.log')} warn;`,
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      '  sendfile on;',
      '  tcp_nopush on;',
      '  keepalive_requests 1000000;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => `  ${temp(name)}`),
      '  server {',
      `    listen 127.0.0.1:${port};`,
      ...(options.serverLines ?? []).map((line) => `    ${line}`),
      `    include ${path.join(prefix, 'registry.conf')};`,
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const args = ['-p', prefix, '-c', conf, '-e', path.join(prefix, 'error.log')];
  await exec(NGINX, [...args, '-t', '-q']);
  const child = spawn(NGINX, [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`nginx exited with ${code}: ${stderr}`))));
  const url = `http://127.0.0.1:${port}`;
  const ready = (async () => {
    for (;;) {
      try {
        if ((await fetch(`${url}/v2/`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  await Promise.race([ready, exited]);
  exited.catch(() => undefined);
  return {
    address: `127.0.0.1:${port}`,
    url,
    child,
    async stop() {
      if (child.exitCode === null) {
        const gone = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGQUIT');
        await gone;
      }
      const log = await readFile(path.join(prefix, 'error.log'), 'utf8').catch(() => '');
      await rm(prefix, { recursive: true, force: true });
      if (/\[(emerg|alert|crit)\]/.test(log)) throw new Error(`nginx logged errors:\n${log}`);
    },
  };
}
