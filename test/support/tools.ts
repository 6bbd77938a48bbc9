import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from './estargz-verify.js';

const run = promisify(execFile);

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs a program with a time limit, so a stuck client fails the test instead of hanging it. */
export async function exec(file: string, args: string[], timeoutMs = 120_000): Promise<CommandResult> {
  try {
    return await run(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

/**
 * A signature policy that accepts anything, so skopeo and podman never read the machine's
 * own. A checked-in file: nothing to write, nothing left in $TMPDIR.
 */
export function signaturePolicy(): string {
  return path.join(projectRoot(), 'test', 'fixtures', 'skopeo-policy.json');
}
const policy = async (): Promise<string> => signaturePolicy();

/** `skopeo copy` from a plain-HTTP registry into an OCI layout. */
export async function skopeoCopy(source: string, destination: string, extra: string[] = []): Promise<CommandResult> {
  return exec('skopeo', ['copy', '--policy', await policy(), '--src-tls-verify=false', ...extra, source, destination]);
}

export async function skopeoInspect(source: string, extra: string[] = []): Promise<Record<string, unknown>> {
  const { stdout } = await exec('skopeo', ['inspect', '--policy', await policy(), '--tls-verify=false', ...extra, source]);
  return JSON.parse(stdout) as Record<string, unknown>;
}

export async function skopeoRawManifest(source: string): Promise<Buffer> {
  const { stdout } = await exec('skopeo', ['inspect', '--raw', '--policy', await policy(), '--tls-verify=false', source]);
  return Buffer.from(stdout);
}

/** `umoci unpack` of an OCI layout tag into `bundle` (rootless, so it runs as any user). */
export async function umociUnpack(layoutAndTag: string, bundle: string): Promise<void> {
  await exec('umoci', ['unpack', '--rootless', '--image', layoutAndTag, bundle]);
}
