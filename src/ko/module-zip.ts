/**
 * Unpacking a module zip (golang.org/ref/mod, "Module zip files") into a directory, with
 * the checks the go command makes: every entry under `<module>@<version>/`, no entry that
 * escapes it, a bound on the total size. Also the go.sum `h1:` hash of the zip (the
 * dirhash Hash1: SHA-256 over "<hex sha256>  <name>\n" lines sorted by name), so the log
 * can be compared with sum.golang.org by hand. yauzl reads the zip because a zip is read
 * from its central directory at the end, which a stream cannot do.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';
import type { ModuleVersion } from './module-proxy.js';

/** A zip the go command would refuse. */
export class ModuleZipRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModuleZipRefused';
  }
}

export interface ExtractedModule {
  /** `h1:` + base64 of the dirhash, as go.sum writes it. */
  h1: string;
  files: number;
  bytes: number;
}

export async function extractModuleZip(zipFile: string, destination: string, module: ModuleVersion, maxBytes: number): Promise<ExtractedModule> {
  const prefix = `${module.module}@${module.version}/`;
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(zipFile, { lazyEntries: true, autoClose: true, strictFileNames: true, validateEntrySizes: true }, (err, z) => (err ? reject(refused(err)) : resolve(z))),
  );
  const hashes: Array<{ name: string; hex: string }> = [];
  const seen = new Set<string>();
  let bytes = 0;
  try {
    for (;;) {
      const entry = await nextEntry(zip);
      if (!entry) break;
      const name = entry.fileName;
      if (name.endsWith('/')) continue; // directory entries carry nothing
      const relative = checkedName(name, prefix);
      const folded = relative.toLowerCase();
      if (seen.has(folded)) throw new ModuleZipRefused(`module zip has two files named ${relative} (ignoring case)`);
      seen.add(folded);
      bytes += entry.uncompressedSize;
      if (bytes > maxBytes) throw new ModuleZipRefused(`module ${module.module}@${module.version} is larger than ${maxBytes} bytes uncompressed`);
      const target = path.join(destination, ...relative.split('/'));
      await mkdir(path.dirname(target), { recursive: true });
      const hash = createHash('sha256');
      const hashing = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          callback(null, chunk);
        },
      });
      const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) => zip.openReadStream(entry, (err, s) => (err ? reject(refused(err)) : resolve(s))));
      await pipeline(stream, hashing, createWriteStream(target, { flags: 'wx', mode: 0o644 }));
      hashes.push({ name, hex: hash.digest('hex') });
    }
  } catch (err) {
    zip.close();
    throw err instanceof ModuleZipRefused ? err : refused(err as Error);
  }
  // Sorted by file name (Go's sort.Strings: byte order), one line per file.
  hashes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const h1 = 'h1:' + createHash('sha256').update(hashes.map((f) => `${f.hex}  ${f.name}\n`).join('')).digest('base64');
  return { h1, files: hashes.length, bytes };
}

/** The entry's path inside the module, or a refusal naming the entry. */
function checkedName(name: string, prefix: string): string {
  if (!name.startsWith(prefix)) throw new ModuleZipRefused(`module zip entry ${JSON.stringify(name)} is not under ${prefix}`);
  const relative = name.slice(prefix.length);
  const parts = relative.split('/');
  if (relative === '' || name.includes('\\') || name.includes('\0') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new ModuleZipRefused(`module zip entry ${JSON.stringify(name)} escapes ${prefix}`);
  }
  return relative;
}

function nextEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | undefined> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    const onEntry = (entry: yauzl.Entry) => {
      cleanup();
      resolve(entry);
    };
    const onEnd = () => {
      cleanup();
      resolve(undefined);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}

/** yauzl's own refusals (absolute names, `..`, bad sizes) are refusals of the zip. */
function refused(err: Error): ModuleZipRefused {
  return new ModuleZipRefused(`module zip refused: ${err.message}`);
}
