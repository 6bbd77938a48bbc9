import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { projectRoot } from '../../test/support/estargz-verify.js';
import { sha256Digest } from './digest.js';
import {
  FOOTER_SIZE,
  LANDMARK_CONTENTS,
  PREFETCH_LANDMARK,
  footerBytes,
  parseFooter,
  parseToc,
  readToc,
  serializeToc,
  type Toc,
  type TocEntry,
} from './estargz-toc.js';

const fixture = (name: string): Buffer => readFileSync(path.join(projectRoot(), 'test', 'fixtures', 'estargz', name));

function countTypes(toc: Toc): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const e of toc.entries) counts[e.type] = (counts[e.type] ?? 0) + 1;
  return counts;
}

describe('eStargz footer', () => {
  test('is the 51-byte gzip member of the spec, and parses back', () => {
    const footer = footerBytes(0x731f);
    assert.equal(footer.length, FOOTER_SIZE);
    assert.equal(
      footer.toString('hex'),
      '1f8b08040000000000ff1a00' + '53471600' + Buffer.from('000000000000731fSTARGZ').toString('hex') + '010000ffff' + '0000000000000000',
    );
    assert.equal(gunzipSync(footer).length, 0, 'a valid, empty gzip member');
    assert.deepEqual(parseFooter(Buffer.concat([Buffer.from('xyz'), footer])), { tocOffset: 0x731f, footerSize: 51 });
  });

  test('the legacy 47-byte footer is recognised; garbage is not', () => {
    const blob = fixture('legacy-stargz-lower.blob');
    assert.deepEqual(parseFooter(blob.subarray(blob.length - 51)), { tocOffset: 29471, footerSize: 47 });
    assert.equal(parseFooter(Buffer.alloc(51)), undefined);
    const bad = Buffer.from(footerBytes(100));
    bad[30] = 0x7a; // 'z' inside the hex offset
    assert.equal(parseFooter(bad), undefined);
  });
});

describe('eStargz TOC parser on the nydus fixtures', () => {
  test('estargz_sample.json: chunk digests and the prefetch landmark', () => {
    const toc = parseToc(fixture('estargz_sample.json'));
    assert.deepEqual(countTypes(toc), { dir: 1, reg: 3, hardlink: 1 });
    const landmark = toc.entries.find((e) => e.name === PREFETCH_LANDMARK)!;
    assert.equal(landmark.size, 1);
    // The landmark's one byte is 0x0f: its digest says so.
    assert.equal(landmark.digest, sha256Digest(Buffer.from([LANDMARK_CONTENTS])));
    assert.equal(landmark.chunkDigest, landmark.digest);
    const link = toc.entries.find((e) => e.type === 'hardlink')!;
    assert.equal(link.linkName, 'bin/busybox');
    assert.equal(toc.entries[1]!.mode, 0o100755);
    assert.ok(!('NumLink' in toc.entries[0]!), 'runtime-only field dropped');
  });

  test('stargz.index-lower.json: a chunked file whose chunks tile it, and xattrs', () => {
    const toc = parseToc(fixture('stargz.index-lower.json'));
    assert.deepEqual(countTypes(toc), { reg: 10, chunk: 6, dir: 4, hardlink: 3, symlink: 1 });
    const large = toc.entries.filter((e) => e.name === 'root-large');
    assert.deepEqual(
      large.map((e) => [e.type, e.chunkOffset ?? 0, e.chunkSize ?? 0]),
      [['reg', 0, 4194304], ['chunk', 4194304, 4194304], ['chunk', 8388608, 4194304], ['chunk', 12582912, 0]],
    );
    const withXattrs = toc.entries.find((e) => e.xattrs)!;
    assert.deepEqual(
      Object.fromEntries(Object.entries(withXattrs.xattrs!).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()])),
      { 'user.key-bar': 'value-bar', 'user.key-foo': 'value-foo' },
    );
  });

  test('stargz.index-upper.json and stargz.index-empty.json', () => {
    assert.deepEqual(countTypes(parseToc(fixture('stargz.index-upper.json'))), { reg: 9, dir: 3 });
    const empty = parseToc(fixture('stargz.index-empty.json'));
    assert.deepEqual(countTypes(empty), { dir: 1, reg: 1 });
    assert.equal(empty.entries[0]!.name, '');
    assert.equal(empty.entries[1]!.digest, sha256Digest(Buffer.alloc(0)));
    assert.equal(empty.entries[1]!.offset, undefined, 'an empty file has no payload member');
  });
});

describe('eStargz TOC from real legacy stargz blobs', () => {
  for (const [file, tocOffset, entries] of [
    ['legacy-stargz-lower.blob', 29471, 25],
    ['legacy-stargz-upper.blob', 15189, 21],
  ] as const) {
    test(`${file}: footer, TOC, and every file digest at its offset`, () => {
      const blob = fixture(file);
      const { toc, tocJSON, footerSize, tocOffset: offset } = readToc(blob);
      assert.equal(footerSize, 47);
      assert.equal(offset, tocOffset);
      assert.equal(toc.entries.length, entries);
      assert.equal(JSON.parse(tocJSON.toString()).version, 1);

      // Each payload member starts at its offset and gunzips (to the next member with an
      // offset) to the file's bytes: the layout a lazy reader depends on.
      const offsets = [...new Set(toc.entries.map((e) => e.offset ?? 0).filter((o) => o > 0)), tocOffset].sort((a, b) => a - b);
      const files = new Map<string, { size: number; digest: string; data: Buffer[] }>();
      let checked = 0;
      for (const e of toc.entries) {
        if (e.type === 'reg' && e.size) files.set(e.name, { size: e.size, digest: e.digest!, data: [] });
        if (!e.offset || !(e.type === 'reg' || e.type === 'chunk')) continue;
        const file = files.get(e.name)!;
        const next = offsets[offsets.indexOf(e.offset) + 1]!;
        assert.deepEqual([...blob.subarray(e.offset, e.offset + 2)], [0x1f, 0x8b], `${e.name} offset is a gzip member`);
        const start = e.chunkOffset ?? 0;
        const length = e.chunkSize || file.size - start;
        file.data.push(gunzipSync(blob.subarray(e.offset, next)).subarray(0, length));
        if (start + length === file.size) {
          assert.equal(sha256Digest(Buffer.concat(file.data)), file.digest, e.name);
          checked++;
        }
      }
      assert.equal(checked, toc.entries.filter((e) => e.type === 'reg' && e.size).length, 'every non-empty file checked');
      assert.ok(checked >= 6);
    });
  }
});

describe('eStargz TOC serialisation and validation', () => {
  const entries: TocEntry[] = [
    { name: 'a<b>&c', type: 'reg', size: 3, mode: 0o644, uid: 0, offset: 10, digest: sha256Digest('abc'), chunkDigest: sha256Digest('abc'), xattrs: { 'user.z': 'eg==', 'user.a': 'YQ==' } },
    { name: 'd', type: 'dir', modtime: '2024-01-02T03:04:05Z', mode: 0o755, uid: 1000, gid: 1000, userName: 'u' },
  ];

  test("writes Go's MarshalIndent shape: tab indent, field order, zero fields left out, HTML escapes", () => {
    const json = serializeToc({ version: 1, entries }).toString();
    assert.ok(json.startsWith('{\n\t"version": 1,\n\t"entries": [\n\t\t{\n\t\t\t"name": "a\\u003cb\\u003e\\u0026c",\n\t\t\t"type": "reg",\n'));
    assert.ok(!json.endsWith('\n'), 'no trailing newline: the TOC digest covers exact bytes');
    assert.ok(!json.includes('"uid": 0'));
    assert.ok(json.indexOf('"user.a"') < json.indexOf('"user.z"'), 'xattr keys sorted');
    const keys = Object.keys(JSON.parse(json).entries[1]);
    assert.deepEqual(keys, ['name', 'type', 'modtime', 'mode', 'uid', 'gid', 'userName']);
    const back = parseToc(json);
    assert.equal(back.entries[0]!.name, 'a<b>&c');
    assert.equal(serializeToc(back).toString(), json);
  });

  test('refuses TOCs a reader would misread', () => {
    const bad = (doc: unknown, message: RegExp) => assert.throws(() => parseToc(JSON.stringify(doc)), message);
    bad({ version: 2, entries: [] }, /version 2/);
    bad({ version: 1 }, /entries/);
    bad({ version: 1, entries: [{ name: 'x', type: 'socket' }] }, /unknown type/);
    bad({ version: 1, entries: [{ name: 'x', type: 'chunk', offset: 5 }] }, /chunk without a regular file/);
    bad({ version: 1, entries: [{ name: 'x', type: 'reg', size: -1 }] }, /non-negative/);
    bad({ version: 1, entries: [{ name: 'x', type: 'reg', size: 5 }] }, /without an offset/);
    bad({ version: 1, entries: [{ name: 'x', type: 'reg', size: 5, offset: 9, digest: 'md5:00' }] }, /bad digest/);
    bad({ version: 1, entries: [{ name: 'x', type: 'symlink' }] }, /without linkName/);
    bad({ version: 1, entries: [{ name: 'x', type: 'dir', modtime: 'yesterday' }] }, /RFC 3339/);
    // Chunks that leave a gap, overrun the file, or stop short.
    bad({ version: 1, entries: [
      { name: 'x', type: 'reg', size: 10, offset: 9, chunkSize: 4 },
      { name: 'x', type: 'chunk', offset: 20, chunkOffset: 5 },
    ] }, /expected 4/);
    bad({ version: 1, entries: [
      { name: 'x', type: 'reg', size: 10, offset: 9, chunkSize: 4 },
      { name: 'x', type: 'chunk', offset: 20, chunkOffset: 4, chunkSize: 8 },
    ] }, /overruns/);
    bad({ version: 1, entries: [{ name: 'x', type: 'reg', size: 10, offset: 9, chunkSize: 4 }] }, /end at 4/);
  });
});
