import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';
import { FsBackend } from '../src/storage/fs.js';
import { nodeArgsFor, siblingModule } from './support/node-child.js';

test('a write killed half-way leaves nothing under the final name', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-crash-'));
  const fsModule = nodeArgsFor(siblingModule(import.meta.url, '../src/storage/fs'));
  // The child streams an object slowly and says when half of it is written; then it is killed.
  const script = `
    import { Readable } from 'node:stream';
    const { FsBackend } = await import(${JSON.stringify(pathToFileURL(fsModule.path).href)});
    const backend = new FsBackend(${JSON.stringify(dir)});
    async function* slow() {
      for (let i = 0; i < 100; i++) {
        yield Buffer.alloc(64 * 1024, i);
        if (i === 50) console.log('half');
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await backend.createIfAbsent('blobs/sha256/victim', Readable.from(slow()));
    console.log('finished');
  `;
  const child = spawn(process.execPath, [...fsModule.args, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('half')) resolve();
        if (chunk.toString().includes('finished')) reject(new Error('the write finished before it could be killed'));
      });
      child.once('exit', (code) => reject(new Error(`child exited with ${code} before half-way`)));
    });
    child.kill('SIGKILL');
    await once(child, 'exit');
    const backend = new FsBackend(dir);
    assert.equal(await backend.stat('blobs/sha256/victim'), undefined);
    const names: string[] = [];
    for await (const entry of backend.list('')) names.push(entry.name);
    assert.deepEqual(names, [], 'no object is visible');
    // And the name is still free for a complete write.
    const { Readable } = await import('node:stream');
    assert.equal(await backend.createIfAbsent('blobs/sha256/victim', Readable.from([Buffer.from('whole')])), true);
    assert.equal((await backend.stat('blobs/sha256/victim'))?.size, 5);
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
