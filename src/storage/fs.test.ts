import { mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runBackendContract } from './backend-contract.js';
import { FsBackend } from './fs.js';

runBackendContract('fs', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'kontain-fs-'));
  return {
    backend: new FsBackend(root),
    cleanup: () => rm(root, { recursive: true, force: true }),
    age: async (name, ms) => {
      const when = new Date(Date.now() - ms);
      await utimes(path.join(root, name), when, when);
    },
  };
});
