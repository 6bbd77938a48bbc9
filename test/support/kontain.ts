import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/server/logging.js';
import { startServer, type RunningServer } from '../../src/server/serve.js';

export interface TestServer extends RunningServer {
  /** `127.0.0.1:PORT` */
  address: string;
  url: string;
  storeDir?: string;
  stop(): Promise<void>;
}

/**
 * Starts kontain in this process on a free loopback port. Without KONTAIN_STORE in
 * `env`, a fresh temp directory is the store and is removed on stop.
 */
export async function startKontain(env: Record<string, string> = {}): Promise<TestServer> {
  const storeDir = env.KONTAIN_STORE ? undefined : await mkdtemp(path.join(tmpdir(), 'kontain-store-'));
  const config = loadConfig({ PORT: '0', KONTAIN_LOG_LEVEL: 'silent', ...(storeDir ? { KONTAIN_STORE: storeDir } : {}), ...env });
  const running = await startServer(config, createLogger(config.logLevel), '127.0.0.1');
  const address = `127.0.0.1:${running.port}`;
  return {
    ...running,
    address,
    url: `http://${address}`,
    storeDir,
    async stop() {
      await running.close();
      if (storeDir) await rm(storeDir, { recursive: true, force: true });
    },
  };
}
