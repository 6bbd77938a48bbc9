import tar from 'tar-stream';

/** One tar entry of a hand-made layer. */
export type LayerEntry =
  | { type: 'file'; name: string; content: string | Buffer; mode?: number; uid?: number; gid?: number; mtime?: Date }
  | { type: 'directory'; name: string; mode?: number; mtime?: Date }
  | { type: 'symlink'; name: string; target: string }
  | { type: 'link'; name: string; target: string };

/**
 * An uncompressed layer tar with any entry type, for images that exercise whiteouts,
 * opaque directories, symlinks and hardlinks.
 */
export async function layerTar(entries: LayerEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const add = (header: Partial<tar.Header> & { name: string }, data?: Buffer) =>
    new Promise<void>((resolve, reject) => pack.entry(header, data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
  for (const entry of entries) {
    const mtime = 'mtime' in entry && entry.mtime ? entry.mtime : new Date(1_600_000_000_000);
    switch (entry.type) {
      case 'file': {
        const data = Buffer.isBuffer(entry.content) ? entry.content : Buffer.from(entry.content);
        await add({ name: entry.name, type: 'file', size: data.length, mode: entry.mode ?? 0o644, uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtime }, data);
        break;
      }
      case 'directory':
        await add({ name: entry.name, type: 'directory', mode: entry.mode ?? 0o755, mtime });
        break;
      case 'symlink':
        await add({ name: entry.name, type: 'symlink', linkname: entry.target, mode: 0o777, mtime });
        break;
      case 'link':
        await add({ name: entry.name, type: 'link', linkname: entry.target, mode: 0o644, mtime });
        break;
    }
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/**
 * Three layers with every case a flattener must get right. With `sameLayerLinks`, the
 * hardlink points into its own layer: the eStargz reader (stargz-snapshotter) cannot
 * open a layer whose hardlink target lives in a lower layer.
 */
export async function trickyLayers(options: { sameLayerLinks?: boolean } = {}): Promise<Buffer[]> {
  return [
    await layerTar([
      { type: 'directory', name: 'etc' },
      { type: 'file', name: 'etc/keep', content: 'kept\n' },
      { type: 'file', name: 'etc/deleted', content: 'gone soon\n' },
      { type: 'directory', name: 'opaque' },
      { type: 'file', name: 'opaque/lower', content: 'hidden by the opaque marker\n' },
      { type: 'directory', name: 'usr' },
      { type: 'directory', name: 'usr/bin' },
      { type: 'file', name: 'usr/bin/tool', content: '#!/bin/sh\necho tool\n', mode: 0o755, uid: 1000, gid: 1000 },
      { type: 'file', name: 'data', content: 'lower data\n' },
    ]),
    await layerTar([
      { type: 'file', name: 'etc/.wh.deleted', content: '' },
      { type: 'file', name: 'opaque/.wh..wh..opq', content: '' },
      { type: 'file', name: 'opaque/upper', content: 'upper file\n' },
      ...(options.sameLayerLinks
        ? [
            { type: 'file', name: 'usr/bin/tool2', content: 'second tool\n', mode: 0o755 } as const,
            { type: 'link', name: 'usr/bin/tool2-link', target: 'usr/bin/tool2' } as const,
          ]
        : [{ type: 'link', name: 'usr/bin/tool-link', target: 'usr/bin/tool' } as const]),
      { type: 'symlink', name: 'usr/bin/alias', target: 'tool' },
    ]),
    await layerTar([
      { type: 'file', name: 'data', content: 'upper data wins\n', mode: 0o600 },
      { type: 'file', name: 'etc/added', content: 'third layer\n' },
    ]),
  ];
}
