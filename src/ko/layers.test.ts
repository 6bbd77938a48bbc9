import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { withTempDir } from '../../test/support/temp-dir.js';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { binaryLayer, kodataLayer, KodataRefused } from './layers.js';

interface Entry {
  name: string;
  type: string;
  mode: number;
  mtime: number;
  content: string;
}

async function entries(layer: Readable): Promise<Entry[]> {
  const out: Entry[] = [];
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      out.push({ name: header.name, type: header.type ?? '', mode: header.mode ?? 0, mtime: header.mtime?.getTime() ?? -1, content: Buffer.concat(chunks).toString() });
      next();
    });
  });
  await new Promise((resolve, reject) => {
    extract.on('finish', () => resolve(undefined));
    extract.on('error', reject);
    layer.on('error', reject);
    layer.pipe(extract);
  });
  return out;
}


test('kodata lands under var/run/ko, read-only, zero times, links inside followed', () =>
  withTempDir('ko-layers-', async (dir) => {
    await mkdir(path.join(dir, 'kodata', 'sub'), { recursive: true });
    await writeFile(path.join(dir, 'kodata', 'greeting.txt'), 'hello\n');
    await writeFile(path.join(dir, 'kodata', 'sub', 'b.txt'), 'b');
    await symlink('greeting.txt', path.join(dir, 'kodata', 'alias.txt'));
    const got = await entries(await kodataLayer(dir));
    assert.deepEqual(
      got.map((e) => [e.name, e.type, e.mode, e.mtime, e.content]),
      [
        ['var/', 'directory', 0o555, 0, ''],
        ['var/run/', 'directory', 0o555, 0, ''],
        ['var/run/ko/', 'directory', 0o555, 0, ''],
        ['var/run/ko/alias.txt', 'file', 0o555, 0, 'hello\n'],
        ['var/run/ko/greeting.txt', 'file', 0o555, 0, 'hello\n'],
        ['var/run/ko/sub/', 'directory', 0o555, 0, ''],
        ['var/run/ko/sub/b.txt', 'file', 0o555, 0, 'b'],
      ],
    );
  }));

test('no kodata still gives the directories; a link out of kodata is refused', () =>
  withTempDir('ko-layers-', async (dir) => {
    assert.deepEqual((await entries(await kodataLayer(dir))).map((e) => e.name), ['var/', 'var/run/', 'var/run/ko/']);
    await mkdir(path.join(dir, 'kodata'));
    await writeFile(path.join(dir, 'secret'), 'x');
    await symlink('../secret', path.join(dir, 'kodata', 'leak'));
    await assert.rejects(kodataLayer(dir), (err: Error) => err instanceof KodataRefused && /kodata\/leak/.test(err.message));
  }));

test('the binary layer holds ko-app/<name>', () =>
  withTempDir('ko-layers-', async (dir) => {
    await writeFile(path.join(dir, 'out'), 'ELF...');
    const got = await entries(await binaryLayer(path.join(dir, 'out'), 'hello'));
    assert.deepEqual(got.map((e) => [e.name, e.type, e.mode, e.content]), [
      ['ko-app/', 'directory', 0o555, ''],
      ['ko-app/hello', 'file', 0o555, 'ELF...'],
    ]);
  }));
