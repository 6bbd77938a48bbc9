import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The production entry: the bundle `npm run build` writes (scripts/bundle.mjs). */
export const BUNDLE_ENTRY = fileURLToPath(new URL('../../bundle/kontain.js', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  /** Everything the server has written to stdout so far (its JSON log lines). */
  output(): string;
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
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
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
  return { child, port, output: () => output };
}
