/**
 * The two layers ko adds to a base image (ko's gobuild.go): the package's `kodata/`
 * under /var/run/ko, and the binary at /ko-app/<name>. Everything is owned by root, mode
 * 0555, with zero mtimes, so the same inputs give the same layer bytes. ko writes
 * absolute names; these are relative (`var/run/ko/…`), which unpacks to the same files
 * and is what every tar reader handles without normalising.
 */
import { createReadStream } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

export const KO_DATA_PATH = '/var/run/ko';
export const KO_APP_DIR = '/ko-app';

const MODE = 0o555;
const EPOCH = new Date(0);

/** kodata contains something ko would refuse (a link out of the directory, a device). */
export class KodataRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KodataRefused';
  }
}

interface TarFile {
  name: string;
  /** Where the bytes come from; a directory when absent. */
  source?: string;
  size?: number;
}

/** The kodata layer: always present, even without a kodata directory (as ko does). */
export async function kodataLayer(packageDir: string): Promise<Readable> {
  const root = path.join(packageDir, 'kodata');
  const entries: TarFile[] = [{ name: 'var/' }, { name: 'var/run/' }, { name: 'var/run/ko/' }];
  if (await isDirectory(root)) {
    const real = await realpath(root);
    await collect(real, real, '', entries);
  }
  return tarOf(entries);
}

/** The binary layer: `ko-app/` and `ko-app/<name>`. */
export async function binaryLayer(binary: string, name: string): Promise<Readable> {
  const { size } = await stat(binary);
  return tarOf([{ name: 'ko-app/' }, { name: `ko-app/${name}`, source: binary, size }]);
}

/**
 * Walks kodata in name order. Symlinks are followed (ko dereferences them) only when
 * they lead inside kodata; the depth bound stops a directory link loop.
 */
async function collect(root: string, sourceDir: string, relative: string, out: TarFile[], depth = 0): Promise<void> {
  if (depth > 32) throw new KodataRefused(`kodata/${relative} is nested more than 32 directories deep (a symlink loop?)`);
  for (const name of (await readdir(sourceDir)).sort()) {
    const rel = relative ? `${relative}/${name}` : name;
    let source = path.join(sourceDir, name);
    if ((await lstat(source)).isSymbolicLink()) {
      const target = await realpath(source).catch(() => undefined);
      if (!target || (target !== root && !target.startsWith(root + path.sep))) {
        throw new KodataRefused(`kodata/${rel} is a symlink that leads outside kodata`);
      }
      source = target;
    }
    const info = await stat(source);
    if (info.isDirectory()) {
      out.push({ name: `var/run/ko/${rel}/` });
      await collect(root, source, rel, out, depth + 1);
    } else if (info.isFile()) {
      out.push({ name: `var/run/ko/${rel}`, source, size: info.size });
    } else {
      throw new KodataRefused(`kodata/${rel} is neither a file nor a directory`);
    }
  }
}

function tarOf(entries: TarFile[]): Readable {
  const pack = tar.pack();
  void (async () => {
    try {
      for (const entry of entries) {
        const header = { name: entry.name, mode: MODE, uid: 0, gid: 0, uname: '', gname: '', mtime: EPOCH };
        if (entry.source === undefined) {
          await new Promise<void>((resolve, reject) => pack.entry({ ...header, type: 'directory' }, (err) => (err ? reject(err) : resolve())));
          continue;
        }
        const sink = pack.entry({ ...header, type: 'file', size: entry.size });
        await pipeline(createReadStream(entry.source), sink);
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return pack as unknown as Readable;
}

async function isDirectory(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() ?? false;
}
