/**
 * Builds signed APK packages and APKINDEX files in the test, with a key made in the
 * test, for what the real fixtures cannot show (so:/cmd: provides, dependency chains,
 * files with known contents, conflicts). The layout follows the format notes in
 * shared/specs/apk.md: signature member, control member (cut tars), data member.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { gzipSync } from 'node:zlib';

export interface TestKey {
  /** File name signatures name, e.g. `test.rsa.pub`. */
  name: string;
  privateKey: KeyObject;
  publicPem: string;
}

export function makeTestKey(name: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { name, privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

const BLOCK = 512;

function header(name: string, size: number, type: string, mode: number, mtime: number, linkname = ''): Buffer {
  const h = Buffer.alloc(BLOCK);
  const put = (text: string, offset: number, length: number) => h.write(text, offset, length, 'utf8');
  const octal = (n: number, length: number) => n.toString(8).padStart(length - 1, '0') + '\0';
  put(name, 0, 100);
  put(octal(mode, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(mtime, 12), 136, 12);
  put('        ', 148, 8);
  put(type, 156, 1);
  put(linkname, 157, 100);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  put('root', 265, 32);
  put('root', 297, 32);
  let sum = 0;
  for (const b of h) sum += b;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return h;
}

const pad = (data: Buffer) => Buffer.concat([data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK)]);

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.from(`${length}${body}`);
}

export interface TestFile {
  path: string;
  content?: string | Buffer;
  mode?: number;
  /** Symlink target. */
  symlink?: string;
  directory?: boolean;
}

/** A tar of files, each regular file preceded by a PAX header with APK-TOOLS.checksum.SHA1. */
function dataTar(files: TestFile[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  const dirs = new Set<string>();
  const addDir = (dir: string) => {
    if (!dir || dirs.has(dir)) return;
    addDir(dir.includes('/') ? dir.slice(0, dir.lastIndexOf('/')) : '');
    dirs.add(dir);
    parts.push(header(dir + '/', 0, '5', 0o755, mtime));
  };
  for (const file of files) {
    if (file.directory) {
      addDir(file.path);
      continue;
    }
    addDir(file.path.includes('/') ? file.path.slice(0, file.path.lastIndexOf('/')) : '');
    if (file.symlink !== undefined) {
      const pax = paxRecord('APK-TOOLS.checksum.SHA1', createHash('sha1').update(file.symlink).digest('hex'));
      parts.push(header(`PaxHeaders/${file.path}`.slice(0, 99), pax.length, 'x', 0o644, mtime), pad(pax));
      parts.push(header(file.path, 0, '2', 0o777, mtime, file.symlink));
      continue;
    }
    const content = Buffer.from(file.content ?? '');
    const pax = paxRecord('APK-TOOLS.checksum.SHA1', createHash('sha1').update(content).digest('hex'));
    parts.push(header(`PaxHeaders/${file.path}`.slice(0, 99), pax.length, 'x', 0o644, mtime), pad(pax));
    parts.push(header(file.path, content.length, '0', file.mode ?? 0o644, mtime), pad(content));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** A tar with no end-of-archive blocks, as signature and control members are. */
function cutTar(entries: Array<{ name: string; data: Buffer }>): Buffer {
  return Buffer.concat(entries.flatMap((e) => [header(e.name, e.data.length, '0', 0o644, 0), pad(e.data)]));
}

function signatureMember(key: TestKey, signed: Buffer): Buffer {
  const signature = sign('sha256', signed, key.privateKey);
  return gzipSync(cutTar([{ name: `.SIGN.RSA256.${key.name}`, data: signature }]));
}

export interface TestPackage {
  name: string;
  version: string;
  arch?: string;
  depends?: string[];
  provides?: string[];
  replaces?: string[];
  origin?: string;
  builddate?: number;
  files: TestFile[];
}

export interface BuiltPackage {
  /** `<name>-<version>.apk` */
  fileName: string;
  bytes: Buffer;
  /** The APKINDEX record (without the blank line). */
  record: string;
}

export function buildApk(pkg: TestPackage, key: TestKey): BuiltPackage {
  const arch = pkg.arch ?? 'x86_64';
  const builddate = pkg.builddate ?? 1700000000;
  const data = gzipSync(dataTar(pkg.files, builddate));
  const installed = pkg.files.reduce((n, f) => n + Buffer.from(f.content ?? '').length, 0);
  const info = [
    `pkgname = ${pkg.name}`,
    `pkgver = ${pkg.version}`,
    `arch = ${arch}`,
    `size = ${installed}`,
    `origin = ${pkg.origin ?? pkg.name}`,
    `pkgdesc = test package ${pkg.name}`,
    `builddate = ${builddate}`,
    ...(pkg.depends ?? []).map((d) => `depend = ${d}`),
    ...(pkg.provides ?? []).map((p) => `provides = ${p}`),
    ...(pkg.replaces ?? []).map((r) => `replaces = ${r}`),
    `datahash = ${createHash('sha256').update(data).digest('hex')}`,
  ].join('\n');
  const control = gzipSync(cutTar([{ name: '.PKGINFO', data: Buffer.from(info + '\n') }]));
  const bytes = Buffer.concat([signatureMember(key, control), control, data]);
  const record = [
    `C:Q1${createHash('sha1').update(control).digest('base64')}`,
    `P:${pkg.name}`,
    `V:${pkg.version}`,
    `A:${arch}`,
    `S:${bytes.length}`,
    `I:${installed}`,
    `T:test package ${pkg.name}`,
    `o:${pkg.origin ?? pkg.name}`,
    `t:${builddate}`,
    ...(pkg.depends?.length ? [`D:${pkg.depends.join(' ')}`] : []),
    ...(pkg.provides?.length ? [`p:${pkg.provides.join(' ')}`] : []),
  ].join('\n');
  return { fileName: `${pkg.name}-${pkg.version}.apk`, bytes, record };
}

/** A signed APKINDEX.tar.gz listing `records`. */
export function buildIndex(records: string[], key: TestKey): Buffer {
  const text = Buffer.from(records.map((r) => r + '\n\n').join(''));
  const tar = Buffer.concat([cutTar([{ name: 'DESCRIPTION', data: Buffer.from('test') }, { name: 'APKINDEX', data: text }]), Buffer.alloc(2 * BLOCK)]);
  const index = gzipSync(tar);
  return Buffer.concat([signatureMember(key, index), index]);
}
