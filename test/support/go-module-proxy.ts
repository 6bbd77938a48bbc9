/**
 * A Go module proxy as a directory (the GOPROXY protocol's file layout, which `file://`
 * GOPROXY URLs serve): `<module>/@v/list`, `<version>.info`, `.mod`, `.zip`, module
 * paths case-escaped. Zips are written with yazl, a writer independent of the reader
 * kontain uses.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buffer } from 'node:stream/consumers';
import yazl from 'yazl';

const escape = (p: string) => p.replace(/[A-Z]/g, (c) => '!' + c.toLowerCase());

export interface ZipEntry {
  name: string;
  data: string | Buffer;
}

/**
 * A zip of the entries. Names yazl refuses to write (`..` elements, for escape tests) are
 * written under a same-length stand-in and patched into the bytes afterwards: names sit in
 * the headers uncompressed and no checksum covers them.
 */
export async function zipBytes(entries: ZipEntry[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const patches: Array<[Buffer, Buffer]> = [];
  for (const { name, data } of entries) {
    const safe = name.replace(/\.\./g, '__');
    if (safe !== name) patches.push([Buffer.from(safe), Buffer.from(name)]);
    zip.addBuffer(Buffer.isBuffer(data) ? data : Buffer.from(data), safe, { mtime: new Date(315532800000) });
  }
  zip.end();
  const bytes = await buffer(zip.outputStream as NodeJS.ReadableStream & AsyncIterable<Buffer>);
  for (const [from, to] of patches) {
    let count = 0;
    for (let at = bytes.indexOf(from); at >= 0; at = bytes.indexOf(from, at + 1), count++) to.copy(bytes, at);
    // Once in the local header, once in the central directory; anything else is a collision with data.
    if (count !== 2) throw new Error(`zip name patch for ${to.toString()} matched ${count} times, not 2`);
  }
  return bytes;
}

export interface GoModuleOptions {
  time?: string;
  /** Extra zip entries named verbatim (not under `<module>@<version>/`). */
  extraZipEntries?: ZipEntry[];
}

/** Adds `module@version` with `files` (paths relative to the module root) to the proxy directory. */
export async function writeGoModule(proxyDir: string, module: string, version: string, files: Record<string, string | Buffer>, options: GoModuleOptions = {}): Promise<void> {
  const dir = path.join(proxyDir, escape(module), '@v');
  await mkdir(dir, { recursive: true });
  const listFile = path.join(dir, 'list');
  const listed = (await readFile(listFile, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  if (!listed.includes(version)) listed.push(version);
  await writeFile(listFile, listed.join('\n') + '\n');
  await writeFile(path.join(dir, `${escape(version)}.info`), JSON.stringify({ Version: version, Time: options.time ?? '2024-01-02T03:04:05Z' }));
  await writeFile(path.join(dir, `${escape(version)}.mod`), files['go.mod'] ?? `module ${module}\n`);
  const entries = Object.entries(files).map(([name, data]) => ({ name: `${module}@${version}/${name}`, data }));
  await writeFile(path.join(dir, `${escape(version)}.zip`), await zipBytes([...entries, ...(options.extraZipEntries ?? [])]));
}

/** The path of a module version's zip in the proxy directory. */
export function moduleZipPath(proxyDir: string, module: string, version: string): string {
  return path.join(proxyDir, escape(module), '@v', `${escape(version)}.zip`);
}

export function proxyURL(dir: string): string {
  return pathToFileURL(dir).toString();
}
