import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { storePathsTar, TAR_BLOCK_BYTES } from './store-tar.js';

async function sha256(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** GNU tar extracts the stream into `dir`. */
function untar(stream: Readable, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', ['-x', '-C', dir, '-f', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
    stream.pipe(child.stdin);
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar exited ${code}`))));
  });
}

test('store paths as tar: GNU tar reads back files across block boundaries, long names, links and modes; equal input, equal bytes', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-store-tar-'));
  try {
    const storePath = path.join(dir, 'store', 'abc123-pkg');
    const longDir = path.join(storePath, 'share', 'x'.repeat(90), 'y'.repeat(90));
    await mkdir(longDir, { recursive: true });
    await mkdir(path.join(storePath, 'bin'));
    const big = randomBytes(TAR_BLOCK_BYTES * 2 + 12345);
    await writeFile(path.join(storePath, 'bin', 'tool'), big);
    await chmod(path.join(storePath, 'bin', 'tool'), 0o555);
    await writeFile(path.join(longDir, 'z'.repeat(120)), 'deep\n');
    await writeFile(path.join(storePath, 'empty'), '');
    await symlink('/' + 'q'.repeat(150), path.join(storePath, 'far-link'));

    const out = path.join(dir, 'out');
    await mkdir(out);
    await untar(storePathsTar([storePath]), out);
    const inImage = path.join(out, storePath);
    assert.ok((await readFile(path.join(inImage, 'bin', 'tool'))).equals(big));
    assert.equal((await stat(path.join(inImage, 'bin', 'tool'))).mode & 0o777, 0o555);
    assert.equal(await readFile(path.join(out, longDir, 'z'.repeat(120)), 'utf8'), 'deep\n');
    assert.equal((await stat(path.join(inImage, 'empty'))).size, 0);
    assert.equal(await readlink(path.join(inImage, 'far-link')), '/' + 'q'.repeat(150));

    assert.equal(await sha256(storePathsTar([storePath])), await sha256(storePathsTar([storePath])));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
