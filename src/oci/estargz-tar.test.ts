import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import tar from 'tar-stream';
import { TarReader, ustarHeader, type TarHeader } from './estargz-tar.js';

/** What tar-stream's pack.entry() takes. */
type EntryHeader = Partial<tar.Header> & { name: string };

/** A header block written by hand, for formats tar-stream does not produce (GNU, base-256, global PAX). */
function block(fields: { name: string; typeflag: string; size?: number; magic?: 'ustar' | 'gnu'; uid?: number | 'base256'; mtime?: number }): Buffer {
  const b = Buffer.alloc(512);
  b.write(fields.name, 0, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  if (fields.uid === 'base256') {
    b[108] = 0x80;
    b.writeUIntBE(5_000_000_000, 110, 6); // too big for 7 octal digits
  } else b.write((fields.uid ?? 0).toString(8).padStart(7, '0') + '\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write((fields.size ?? 0).toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  b.write((fields.mtime ?? 0).toString(8).padStart(11, '0') + '\0', 136, 'latin1');
  b.write(fields.typeflag, 156, 'latin1');
  b.write(fields.magic === 'gnu' ? 'ustar  \0' : 'ustar\x0000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

function paxRecord(key: string, value: Buffer | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len++;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

async function packTar(entries: { header: EntryHeader; data?: Buffer }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise((resolve) => pack.on('end', () => resolve(undefined)));
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => pack.entry(e.header, e.data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Reads every entry; `pieces` splits the input into tiny chunks to exercise boundaries. */
async function readAll(input: Buffer, pieces = 0): Promise<{ header: TarHeader; data: Buffer }[]> {
  const parts: Buffer[] = [];
  if (pieces > 0) for (let i = 0; i < input.length; i += pieces) parts.push(input.subarray(i, i + pieces));
  else parts.push(input);
  const reader = new TarReader(Readable.from(parts));
  const out = [];
  for (let header = await reader.next(); header; header = await reader.next()) {
    const data: Buffer[] = [];
    for (let part = await reader.readPayload(1000); part; part = await reader.readPayload(1000)) data.push(part);
    out.push({ header, data: Buffer.concat(data) });
  }
  return out;
}

describe('eStargz tar reader', () => {
  test('ustar and PAX from tar-stream: names, ids, times, binary xattrs, raw bytes kept', async () => {
    const long = 'usr/' + 'd'.repeat(60) + '/' + 'e'.repeat(60) + '/file'; // ustar prefix + name
    const longer = 'x/'.repeat(80) + 'y'; // > 255 bytes: a PAX path record
    const input = await packTar([
      { header: { name: 'dir/', type: 'directory', mode: 0o755, mtime: new Date(1_700_000_000_000), uid: 1000, gid: 100, uname: 'alice', gname: 'users' } },
      { header: { name: long, size: 5, mode: 0o4755, mtime: new Date(1_700_000_000_000) }, data: Buffer.from('hello') },
      { header: { name: longer, size: 2, pax: { 'SCHILY.xattr.user.kontain': 'yes' } }, data: Buffer.from('hi') },
      { header: { name: 'link', type: 'symlink', linkname: 'dir/target' } },
      { header: { name: 'hard', type: 'link', linkname: long } },
      { header: { name: 'tty', type: 'character-device', devmajor: 5, devminor: 1 } },
    ]);
    for (const pieces of [0, 7]) {
      const entries = await readAll(input, pieces);
      assert.deepEqual(entries.map((e) => [e.header.name, e.header.type, e.header.size]), [
        ['dir/', 'dir', 0], [long, 'reg', 5], [longer, 'reg', 2], ['link', 'symlink', 0], ['hard', 'hardlink', 0], ['tty', 'char', 0],
      ]);
      const [dir, file, paxed, link, hard, tty] = entries.map((e) => e.header) as TarHeader[];
      assert.deepEqual([dir!.uid, dir!.gid, dir!.uname, dir!.gname, dir!.mode, dir!.mtime], [1000, 100, 'alice', 'users', 0o755, 1_700_000_000]);
      assert.equal(file!.mode, 0o4755);
      assert.equal(entries[1]!.data.toString(), 'hello');
      assert.equal(link!.linkName, 'dir/target');
      assert.equal(hard!.linkName, long);
      assert.deepEqual([tty!.devMajor, tty!.devMinor], [5, 1]);
      assert.deepEqual(paxed!.xattrs.get('user.kontain'), Buffer.from('yes'));
      assert.equal(paxed!.raw.length, 3, 'PAX header, its records, the main header');
      // Header blocks + payload + padding, in order, are the input minus its end blocks.
      const rebuilt = Buffer.concat(entries.flatMap((e) => [...e.header.raw, padded(e.data)]));
      assert.ok(rebuilt.equals(input.subarray(0, rebuilt.length)));
      assert.ok(input.subarray(rebuilt.length).every((b) => b === 0));
    }
  });

  test('GNU long names, base-256 numbers, PAX times and a global header', async () => {
    const name = 'n'.repeat(150);
    const target = 't'.repeat(120);
    const global = Buffer.concat([paxRecord('uname', 'global-user'), paxRecord('comment', 'git archive')]);
    const local = Buffer.concat([paxRecord('mtime', '1700000000.5'), paxRecord('uid', '4000000000'), paxRecord('SCHILY.xattr.user.k', Buffer.from([0xff, 0]))]);
    const input = Buffer.concat([
      block({ name: 'pax_global_header', typeflag: 'g', size: global.length }), padded(global),
      block({ name: '././@LongLink', typeflag: 'L', size: name.length + 1, magic: 'gnu' }), padded(Buffer.from(name + '\0')),
      block({ name: '././@LongLink', typeflag: 'K', size: target.length + 1, magic: 'gnu' }), padded(Buffer.from(target + '\0')),
      block({ name: name.slice(0, 100), typeflag: '2', magic: 'gnu', uid: 'base256', mtime: 1_600_000_000 }),
      block({ name: 'PaxHeaders/f', typeflag: 'x', size: local.length }), padded(local),
      block({ name: 'f', typeflag: '0', size: 3, mtime: 1 }), padded(Buffer.from('abc')),
    ]);
    const entries = await readAll(Buffer.concat([input, Buffer.alloc(1024)]), 100);
    assert.equal(entries.length, 2);
    const [symlink, file] = entries.map((e) => e.header) as TarHeader[];
    assert.equal(symlink!.name, name);
    assert.equal(symlink!.linkName, target);
    assert.equal(symlink!.uid, 5_000_000_000);
    assert.equal(symlink!.mtime, 1_600_000_000);
    assert.equal(symlink!.uname, 'global-user', 'global PAX records apply to later entries');
    assert.equal(symlink!.globalRaw.length, 2, 'the global header is handed on, not lost');
    assert.equal(symlink!.raw.length, 5);
    assert.equal(file!.mtime, 1_700_000_001, 'PAX .5 s rounds up, as Go does');
    assert.equal(file!.uid, 4_000_000_000);
    assert.deepEqual(file!.xattrs.get('user.k'), Buffer.from([0xff, 0]));
    assert.equal(file!.globalRaw.length, 0);
    assert.equal(entries[1]!.data.toString(), 'abc');
  });

  test('a stream that ends without end blocks is complete; one cut short is an error', async () => {
    const input = await packTar([{ header: { name: 'a', size: 600 }, data: Buffer.alloc(600, 1) }]);
    assert.equal((await readAll(input.subarray(0, 512 + 1024))).length, 1);
    await assert.rejects(readAll(input.subarray(0, 700)), /unexpected end of stream inside a file/);
    await assert.rejects(readAll(input.subarray(0, 300)), /unexpected end of stream inside a header/);
  });

  test('refuses what is not a tar, and sparse files', async () => {
    const junk = Buffer.alloc(1024, 0x41);
    await assert.rejects(readAll(junk), /checksum/);
    await assert.rejects(readAll(Buffer.concat([block({ name: 's', typeflag: 'S', magic: 'gnu' }), Buffer.alloc(1024)])), /unsupported type "S"/);
  });

  test("ustarHeader writes Go's minimal header", () => {
    const h = ustarHeader('stargz.index.json', 1234);
    assert.equal(h.subarray(0, 17).toString(), 'stargz.index.json');
    assert.equal(h.subarray(100, 108).toString('latin1'), '0000000\0');
    assert.equal(h.subarray(124, 136).toString('latin1'), '00000002322\0');
    assert.equal(h.subarray(257, 265).toString('latin1'), 'ustar\x0000');
    assert.equal(h.subarray(154, 156).toString('latin1'), '\0 ');
  });
});
