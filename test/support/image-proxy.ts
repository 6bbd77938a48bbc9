/**
 * Drives an image proxy (kontain's or skopeo's) with the Python client in
 * test/proxy/image_proxy_client.py and returns what it saw, parsed.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { projectRoot } from './estargz-verify.js';
import { nodeArgsFor, siblingModule } from './node-child.js';

const run = promisify(execFile);

export const CLIENT = path.join(projectRoot(), 'test', 'proxy', 'image_proxy_client.py');

/** `node …/kontain.js` as argv, for the client to start. */
export function kontainCommand(...args: string[]): string[] {
  const { args: nodeArgs, path: file } = nodeArgsFor(siblingModule(import.meta.url, '../../cmd/kontain'));
  return [process.execPath, ...nodeArgs, file, ...args];
}

/** An empty auth file and an accept-anything policy, so neither proxy reads the machine's own. */
export async function isolatedSkopeoFiles(): Promise<{ authfile: string; policy: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-proxy-skopeo-'));
  const authfile = path.join(dir, 'auth.json');
  const policy = path.join(dir, 'policy.json');
  await writeFile(authfile, JSON.stringify({ auths: {} }));
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  return { authfile, policy };
}

export async function runClient<T>(mode: string, command: string[], args: string[], env: Record<string, string> = {}, timeoutMs = 180_000): Promise<T> {
  try {
    const { stdout } = await run('python3', [CLIENT, mode, ...command, '--', ...args], { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, env: { ...process.env, ...env } });
    return JSON.parse(stdout) as T;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`image proxy client ${mode} ${command.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}
