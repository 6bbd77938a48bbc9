/**
 * Tar streams of Nix store paths, and of the links layer (`/bin/x` → the store). Owner
 * root, the modes the store holds, one fixed mtime (the store's own, 1 s past the epoch),
 * names relative to `/`, entries in name order: the same store paths always give the
 * same layer bytes, whichever image they are part of.
 */
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

const STORE_MTIME = new Date(1000);
// Large reads: store files are read once, whole, and small chunks cost more than the bytes.
const READ_CHUNK = 1024 * 1024;

type Entry =
  | { type: 'directory'; name: string; mode: number }
  | { type: 'file'; name: string; mode: number; source: string; size: number }
  | { type: 'symlink'; name: string; linkname: string };

/** The directories above the store (`nix/`, `nix/store/`), then each path's tree. */
export function storePathsTar(storePaths: readonly string[]): Readable {
  return packEntries(async function* () {
    const storeDir = path.dirname(storePaths[0]!);
    const parts = storeDir.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) yield { type: 'directory', name: parts.slice(0, i).join('/') + '/', mode: 0o755 };
    for (const storePath of [...storePaths].sort()) yield* walk(storePath);
  });
}

async function* walk(absolute: string): AsyncGenerator<Entry> {
  const info = await lstat(absolute);
  const name = absolute.replace(/^\/+/, '');
  if (info.isSymbolicLink()) {
    yield { type: 'symlink', name, linkname: await readlink(absolute) };
  } else if (info.isDirectory()) {
    yield { type: 'directory', name: name + '/', mode: info.mode & 0o7777 };
    for (const child of (await readdir(absolute)).sort()) yield* walk(path.join(absolute, child));
  } else if (info.isFile()) {
    yield { type: 'file', name, mode: info.mode & 0o7777, source: absolute, size: info.size };
  }
  // The store holds nothing else (no devices, fifos or sockets).
}

/** Top-level directories of packages linked into `/`, entry by entry. */
const LINKED_DIRS = ['bin', 'sbin', 'etc', 'lib', 'share'];

/**
 * The links layer: for each package (in order; the first wins a name), each entry of its
 * bin, sbin, etc, lib and share directories as a symlink at the same place under `/`.
 */
export async function linksTar(packagePaths: readonly string[]): Promise<{ tar: Readable; links: Map<string, string> }> {
  const links = new Map<string, string>();
  const dirs = new Set<string>();
  for (const pkg of packagePaths) {
    for (const dir of LINKED_DIRS) {
      const entries = await readdir(path.join(pkg, dir)).catch(() => [] as string[]);
      for (const entry of entries.sort()) {
        const name = `${dir}/${entry}`;
        if (links.has(name)) continue;
        dirs.add(dir);
        links.set(name, path.join(pkg, dir, entry));
      }
    }
  }
  const names = [...links.keys()].sort();
  const tarStream = packEntries(async function* () {
    for (const dir of [...dirs].sort()) yield { type: 'directory', name: dir + '/', mode: 0o755 };
    for (const name of names) yield { type: 'symlink', name, linkname: links.get(name)! };
  });
  return { tar: tarStream, links };
}

/** True when `file` exists in the package (a CA bundle, …). */
export async function hasFile(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined))?.isFile() ?? false;
}

function packEntries(entries: () => AsyncGenerator<Entry>): Readable {
  const pack = tar.pack();
  void (async () => {
    try {
      for await (const entry of entries()) {
        const header = { name: entry.name, uid: 0, gid: 0, uname: '', gname: '', mtime: STORE_MTIME };
        if (entry.type === 'file') {
          await pipeline(createReadStream(entry.source, { highWaterMark: READ_CHUNK }), pack.entry({ ...header, type: 'file', mode: entry.mode, size: entry.size }));
        } else {
          const rest = entry.type === 'symlink' ? { type: 'symlink' as const, mode: 0o777, linkname: entry.linkname } : { type: 'directory' as const, mode: entry.mode };
          await new Promise<void>((resolve, reject) => pack.entry({ ...header, ...rest }, (err) => (err ? reject(err) : resolve())));
        }
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return pack as unknown as Readable;
}
