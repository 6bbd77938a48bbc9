/**
 * Drives an image proxy (kontain's or skopeo's) with the Python client in
 * test/proxy/image_proxy_client.py and returns what it saw, parsed.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { projectRoot } from './estargz-verify.js';
import { nodeArgsFor, siblingModule } from './node-child.js';
import { exec } from './tools.js';
import type { UpstreamRegistry } from './upstream-registry.js';
import { layoutDir, pushOciLayout, tarLayer, writeOciLayout, type WrittenLayout } from './upstream-images.js';

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

/** The images both proxy tests read: `lib/{single,index,docker,corrupt}:v1` in `upstream`. */
export interface ProxyTestImages {
  /** A two-layer OCI image made of `singleLayers`. */
  single: WrittenLayout;
  /** linux/amd64 and linux/arm64/v8. */
  index: WrittenLayout;
  /** The one layer of `corrupt`, whose stored bytes no longer match its digest. */
  corruptLayer: string;
}

/**
 * Pushes the proxy tests' images: `single` from the given layer files, a two-platform
 * index, a Docker-typed image (converted to schema 2 by skopeo on the way in), and
 * `corrupt`, whose layer has one byte flipped `flipFromEnd` bytes before its end in the
 * registry's storage.
 */
export async function pushProxyTestImages(
  upstream: UpstreamRegistry,
  files: { authfile: string; policy: string },
  options: { singleLayers: Array<Record<string, string | Buffer>>; corruptLayer: Record<string, string | Buffer>; flipFromEnd: number },
): Promise<ProxyTestImages> {
  const single = await writeOciLayout(await layoutDir(), 'v1', [{ layers: await Promise.all(options.singleLayers.map((files) => tarLayer(files))) }]);
  await pushOciLayout(single, `${upstream.host}/lib/single:v1`);
  const index = await writeOciLayout(await layoutDir(), 'v1', [
    { layers: [await tarLayer({ arch: 'amd64' })], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [await tarLayer({ arch: 'arm64' })], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]);
  await pushOciLayout(index, `${upstream.host}/lib/index:v1`);
  const docker = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer({ 'docker/file': 'docker\n' })] }]);
  await exec('skopeo', ['copy', '--quiet', '--policy', files.policy, '--format', 'v2s2', '--dest-tls-verify=false', '--dest-authfile', files.authfile, `oci:${docker.dir}:v1`, `docker://${upstream.host}/lib/docker:v1`]);
  const corrupt = await writeOciLayout(await layoutDir(), 'v1', [{ layers: [await tarLayer(options.corruptLayer)] }]);
  await pushOciLayout(corrupt, `${upstream.host}/lib/corrupt:v1`);
  const corruptLayer = corrupt.images[0]!.layers[0]!.digest;
  const file = upstream.blobDataPath(corruptLayer);
  const bytes = await readFile(file);
  bytes[bytes.length - options.flipFromEnd] ^= 0xff;
  await writeFile(file, bytes);
  return { single, index, corruptLayer };
}
