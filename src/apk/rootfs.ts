/**
 * The image's one layer as a tar stream: each package's data streamed from its file on
 * disk, in install order, writing only the entries the plan gives it, then the files the
 * build generates (installed database, /etc/apk/*, accounts). Nothing of a package is
 * held in memory except the few small files that are captured to be merged (passwd,
 * group).
 */
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { readLimited } from '../util/byte-limit.js';
import tar from 'tar-stream';
import { normalisePath, openDataTar, toDataEntry, type DataEntry } from './package-data.js';
import { resolveThroughLinks, type InstallPlan } from './install-plan.js';

export interface GeneratedFile {
  /** Path as apk names it (`lib/apk/db/installed`); placed through the image's symlinks. */
  path: string;
  content: Buffer | string;
  mode?: number;
}

export interface RootfsOptions {
  /** mtime of generated files and directories. */
  mtime: Date;
  /**
   * Package files kept aside instead of written (paths as apk names them, before symlinks):
   * every path the build generates, so the layer never holds two entries for one path, and
   * the package's copy can be merged (passwd, group).
   */
  capture: readonly string[];
  /** The generated files, given the captured package files. */
  generate(captured: ReadonlyMap<string, Buffer>): GeneratedFile[];
}

const MAX_CAPTURE = 1024 * 1024;

type TarHeader = Parameters<tar.Pack['entry']>[0];

function headerOf(entry: DataEntry): TarHeader {
  return {
    name: entry.path,
    type: entry.type,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    mtime: entry.mtime,
    size: entry.type === 'file' ? entry.size : 0,
    ...(entry.linkname ? { linkname: entry.type === 'link' ? normalisePath(entry.linkname) : entry.linkname } : {}),
    ...(entry.uname ? { uname: entry.uname } : {}),
    ...(entry.gname ? { gname: entry.gname } : {}),
    ...(entry.devmajor ? { devmajor: entry.devmajor } : {}),
    ...(entry.devminor ? { devminor: entry.devminor } : {}),
  };
}


export function rootfsTar(plan: InstallPlan, options: RootfsOptions): Readable {
  const pack = tar.pack();
  const directories = new Set<string>();
  const captured = new Map<string, Buffer>();
  const put = (header: TarHeader, body?: NodeJS.ReadableStream) =>
    new Promise<void>((resolve, reject) => {
      const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
      if (body) pipeline(body, sink).catch(reject);
      else if (header.type === 'file' && header.size) reject(new Error(`no content for ${header.name}`));
    });

  const capturedAs = new Map(options.capture.map((p) => [resolveThroughLinks(plan, p), p]));
  (async () => {
    for (const [index, planned] of plan.packages.entries()) {
      const extract = tar.extract();
      const data = openDataTar(planned.apk.path, planned.apk.head.dataOffset);
      data.on('error', (err) => extract.destroy(err));
      data.pipe(extract);
      for await (const item of extract) {
        const entry = toDataEntry(item.header);
        if (!entry || plan.writer.get(entry.path) !== index) {
          item.resume();
          continue;
        }
        if (entry.type === 'directory') {
          if (directories.has(entry.path)) {
            item.resume();
            continue;
          }
          directories.add(entry.path);
        }
        const generated = capturedAs.get(entry.path);
        if (generated !== undefined && entry.type !== 'directory') {
          if (entry.type === 'file') captured.set(generated, await readLimited(item as unknown as Readable, MAX_CAPTURE, () => new Error(`/${entry.path} in a package is larger than ${MAX_CAPTURE} bytes`)));
          else item.resume();
          continue;
        }
        if (entry.type === 'file') await put(headerOf(entry), item as unknown as NodeJS.ReadableStream);
        else {
          item.resume();
          await put(headerOf(entry));
        }
      }
    }
    for (const file of options.generate(captured)) {
      const path = resolveThroughLinks(plan, file.path);
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const dir = parts.slice(0, i).join('/');
        if (directories.has(dir)) continue;
        directories.add(dir);
        await put({ name: dir, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: options.mtime });
      }
      const content = Buffer.isBuffer(file.content) ? file.content : Buffer.from(file.content);
      const sink = pack.entry({ name: path, type: 'file', mode: file.mode ?? 0o644, uid: 0, gid: 0, mtime: options.mtime, size: content.length }, content);
      void sink;
    }
    pack.finalize();
  })().catch((err: Error) => pack.destroy(err));
  return pack as unknown as Readable;
}
