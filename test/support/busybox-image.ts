/**
 * A small real base image for build tests: Debian's busybox-static (`/bin/busybox`) with
 * the applet links a Dockerfile's RUN steps use, pushed to a loopback registry.
 */
import { readFile } from 'node:fs/promises';
import { layerTar, type LayerEntry } from './rich-layers.js';
import { layoutDir, pushOciLayout, writeOciLayout } from './upstream-images.js';
import type { RuntimeConfig } from '../../src/oci/types.js';

const BUSYBOX = '/bin/busybox';
const APPLETS = ['sh', 'echo', 'cat', 'ls', 'mkdir', 'sleep', 'false', 'true', 'test', 'wget', 'env', 'cp', 'rm', 'touch', 'printf', 'grep'];

/** Pushes the busybox base as `<registry>/<repository>:<tag>`; returns the manifest digest. */
export async function pushBusyboxBase(registry: string, repository: string, tag: string, options: { applets?: string[]; layers?: Buffer[]; config?: RuntimeConfig } = {}): Promise<string> {
  const dir = await layoutDir();
  const layout = await writeOciLayout(dir, tag, [{ layers: [await busyboxLayer(options.applets), ...(options.layers ?? [])], config: options.config }]);
  await pushOciLayout(layout, `${registry}/${repository}:${tag}`);
  return layout.top.digest;
}

/** The layer of busybox-static with links for the applets (default: what Dockerfile RUN steps in the tests use). */
export async function busyboxLayer(applets = APPLETS): Promise<Buffer> {
  const entries: LayerEntry[] = [
    { type: 'directory', name: 'bin' },
    { type: 'directory', name: 'tmp', mode: 0o1777 },
    { type: 'directory', name: 'etc' },
    { type: 'file', name: 'bin/busybox', content: await readFile(BUSYBOX), mode: 0o755 },
    { type: 'file', name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    ...applets.map((name): LayerEntry => ({ type: 'symlink', name: `bin/${name}`, target: 'busybox' })),
  ];
  return layerTar(entries);
}
