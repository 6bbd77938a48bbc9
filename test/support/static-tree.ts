/**
 * A static tree as an operator makes one: images built with umoci, copied with skopeo
 * into `dir:` copies (Docker v2s2, OCI, a two-platform `--all` copy, a two-level name)
 * and an OCI layout with two tags, then deduplicated with util-linux `hardlink`.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MediaType } from '../../src/oci/mediatypes.js';
import { exec, skopeoCopy } from './tools.js';
import { layoutDir, tarLayer, writeOciLayout } from './upstream-images.js';

export interface StaticTreeLayout {
  root: string;
  /** What each image's /hello.txt says, by `name:tag`. */
  hello: Record<string, string>;
}

/** `umoci new` of `image` (layout:tag) with one file /hello.txt saying `text`. */
async function umociImage(image: string, text: string, scratch: string): Promise<void> {
  await exec('umoci', ['new', '--image', image]);
  const file = path.join(scratch, `hello-${text.replace(/\W/g, '_')}.txt`);
  await writeFile(file, text);
  await exec('umoci', ['insert', '--rootless', '--image', image, file, '/hello.txt']);
  await exec('umoci', ['config', '--image', image, '--config.cmd', '/bin/cat', '--config.cmd', '/hello.txt']);
}

export async function makeStaticTree(root: string): Promise<StaticTreeLayout> {
  const scratch = await layoutDir();
  const built = path.join(scratch, 'built');
  await exec('umoci', ['init', '--layout', built]);
  await umociImage(`${built}:base`, 'hello from base', scratch);

  const dirCopy = async (source: string, name: string, extra: string[] = []) => {
    const target = path.join(root, name);
    await mkdir(target, { recursive: true });
    await skopeoCopy(source, `dir:${target}`, ['--quiet', ...extra]);
  };
  await dirCopy(`oci:${built}:base`, 'app/oci');
  await dirCopy(`oci:${built}:base`, 'app/v2s2', ['--format', 'v2s2']);
  await dirCopy(`oci:${built}:base`, 'team/tools/1.0');

  const platforms = await writeOciLayout(path.join(scratch, 'platforms'), 'latest', [
    { layers: [await tarLayer({ 'hello.txt': 'hello from amd64' })], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [await tarLayer({ 'hello.txt': 'hello from arm64' })], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]);
  await dirCopy(`oci:${platforms.dir}:latest`, 'multi/latest', ['--all']);

  // An OCI layout made in place by umoci, with two tags.
  const layout = path.join(root, 'layout');
  await mkdir(path.dirname(layout), { recursive: true });
  await exec('umoci', ['init', '--layout', layout]);
  await umociImage(`${layout}:one`, 'hello from one', scratch);
  await umociImage(`${layout}:two`, 'hello from two', scratch);

  // --ignore-time: skopeo wrote the copies at different times, and hardlink compares times by default.
  await exec('hardlink', ['--quiet', '--ignore-time', root]);
  return {
    root,
    hello: {
      'app:oci': 'hello from base',
      'app:v2s2': 'hello from base',
      'team/tools:1.0': 'hello from base',
      'layout:one': 'hello from one',
      'layout:two': 'hello from two',
    },
  };
}

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');

/** A one-layer OCI image, bytes and digests, written by hand (the layer may be any bytes when only serving is measured or checked). */
export interface OneLayerImage {
  manifest: Buffer;
  digest: string;
  config: Buffer;
  layer: Buffer;
}

export function oneLayerImage(layer: Buffer): OneLayerImage {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
      layers: [{ mediaType: MediaType.ociLayerGzip, digest: sha256(layer), size: layer.length }],
    }),
  );
  return { manifest, digest: sha256(manifest), config, layer };
}

/** Writes `image` as a skopeo `dir:` copy at `dir`; `layerBytes` replaces the layer file's bytes. */
export async function writeDirCopy(dir: string, image: OneLayerImage, layerBytes = image.layer): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, sha256(image.layer).slice(7)), layerBytes);
  await writeFile(path.join(dir, sha256(image.config).slice(7)), image.config);
  await writeFile(path.join(dir, 'manifest.json'), image.manifest);
  await writeFile(path.join(dir, 'version'), 'Directory Transport Version: 1.1\n');
}
