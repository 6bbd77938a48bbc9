import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { withTempDir } from '../../test/support/temp-dir.js';
import { extractModuleZip, ModuleZipRefused } from './module-zip.js';
import { zipBytes } from '../../test/support/go-module-proxy.js';

const MODULE = { module: 'example.com/zipped', version: 'v1.0.0' };

/** A zip written by yazl (a writer independent of the reader). */
async function writeZip(file: string, entries: Record<string, string>): Promise<void> {
  await writeFile(file, await zipBytes(Object.entries(entries).map(([name, data]) => ({ name, data }))));
}


test('a module zip unpacks under its prefix and hashes as go.sum does', () =>
  withTempDir('ko-zip-', async (dir) => {
    const zip = path.join(dir, 'm.zip');
    await writeZip(zip, { 'example.com/zipped@v1.0.0/go.mod': 'module example.com/zipped\n', 'example.com/zipped@v1.0.0/a/b.go': 'package a\n', 'example.com/zipped@v1.0.0/z.txt': 'z' });
    const out = path.join(dir, 'src');
    const result = await extractModuleZip(zip, out, MODULE, 1 << 20);
    assert.equal(await readFile(path.join(out, 'a', 'b.go'), 'utf8'), 'package a\n');
    assert.equal(result.files, 3);
    // The expected value computed independently, with sha256sum and the dirhash recipe.
    const line = (name: string, body: string) => `${execFileSync('sha256sum', { input: body }).toString().slice(0, 64)}  ${name}\n`;
    const summary = line('example.com/zipped@v1.0.0/a/b.go', 'package a\n') + line('example.com/zipped@v1.0.0/go.mod', 'module example.com/zipped\n') + line('example.com/zipped@v1.0.0/z.txt', 'z');
    const expected = 'h1:' + Buffer.from(execFileSync('sha256sum', { input: summary }).toString().slice(0, 64), 'hex').toString('base64');
    assert.equal(result.h1, expected);
  }));

test('entries outside the prefix, escaping it, or too large are refused by name', () =>
  withTempDir('ko-zip-', async (dir) => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ 'example.com/other@v1.0.0/x.go': 'x' }, /example\.com\/other@v1\.0\.0\/x\.go/],
      [{ 'example.com/zipped@v1.0.0/../escape.go': 'x' }, /escape\.go/],
      [{ 'example.com/zipped@v1.0.0/big': 'x'.repeat(2000) }, /larger than 1000 bytes/],
      [{ 'example.com/zipped@v1.0.0/A.go': 'x', 'example.com/zipped@v1.0.0/a.go': 'y' }, /two files named/],
    ];
    for (const [i, [entries, message]] of cases.entries()) {
      const zip = path.join(dir, `bad-${i}.zip`);
      await writeZip(zip, entries);
      await assert.rejects(extractModuleZip(zip, path.join(dir, `out-${i}`), MODULE, 1000), (err: Error) => err instanceof ModuleZipRefused && message.test(err.message));
    }
  }));
