/**
 * A Cloud Native Buildpacks builder image of the tests' own, pushed to a loopback
 * registry with its run image. Both are Debian's busybox-static; the builder adds, as a
 * real builder lays them out, a buildpack written in shell that follows the Buildpack API
 * (`/cnb/buildpacks/<id>/<version>/bin/{detect,build}`), `/cnb/order.toml`, the
 * `io.buildpacks.builder.metadata` label (run image, lifecycle APIs) and the build user's
 * CNB_USER_ID/CNB_GROUP_ID. In place of the lifecycle it carries a stand-in
 * `/cnb/lifecycle/creator` and `launcher` (test/support/buildpack-builder/creator says what it does).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { sourceTreeDir } from './source-tree.js';
import { layerTar, type LayerEntry } from './rich-layers.js';
import { pushBusyboxBase } from './busybox-image.js';

/** What the stand-in creator, the launcher and the buildpack run. */
const APPLETS = ['sh', 'echo', 'cat', 'ls', 'mkdir', 'false', 'true', 'test', '[', 'env', 'cp', 'mv', 'rm', 'printf', 'grep', 'sed', 'tar', 'gzip', 'sha256sum', 'cut', 'wc', 'head', 'date', 'basename', 'ln', 'tr', 'mktemp', 'chmod', 'pwd', 'id'];
const BUILD_USER = 1000;

export interface TestBuilder {
  /** `<registry>/test/builder:<tag>`, for KONTAIN_BUILDPACK_BUILDER. */
  builder: string;
  /** `<registry>/test/run:<tag>`, as the builder's metadata names it. */
  runImage: string;
}

/** Every file under a fixture directory as layer entries under `prefix`, modes kept. */
async function treeEntries(dir: string, prefix: string): Promise<LayerEntry[]> {
  const entries: LayerEntry[] = [{ type: 'directory', name: prefix }];
  for (const name of (await readdir(dir)).sort()) {
    const file = path.join(dir, name);
    const info = await stat(file);
    if (info.isDirectory()) entries.push(...(await treeEntries(file, `${prefix}/${name}`)));
    else entries.push({ type: 'file', name: `${prefix}/${name}`, content: await readFile(file), mode: info.mode & 0o777 });
  }
  return entries;
}

/** Pushes the run image and the builder (`test/run:<tag>`, `test/builder:<tag>`); another description makes another builder digest. */
export async function pushTestBuilder(registry: string, tag = '1', description = 'kontain test builder: shell buildpacks and a stand-in lifecycle'): Promise<TestBuilder> {
  const root = sourceTreeDir(path.join('test', 'support', 'buildpack-builder'), 'creator');
  const runImage = `${registry}/test/run:${tag}`;
  await pushBusyboxBase(registry, 'test/run', tag, { applets: APPLETS, config: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin'], User: `${BUILD_USER}:${BUILD_USER}` } });
  const cnb = await layerTar([
    { type: 'directory', name: 'cnb' },
    { type: 'directory', name: 'cnb/lifecycle' },
    { type: 'file', name: 'cnb/lifecycle/creator', content: await readFile(path.join(root, 'creator')), mode: 0o755 },
    { type: 'file', name: 'cnb/lifecycle/launcher', content: await readFile(path.join(root, 'launcher')), mode: 0o755 },
    { type: 'file', name: 'cnb/order.toml', content: await readFile(path.join(root, 'order.toml')) },
    { type: 'file', name: 'cnb/run.toml', content: `[[images]]\n  image = "${runImage}"\n` },
    ...(await treeEntries(path.join(root, 'buildpacks'), 'cnb/buildpacks')),
    { type: 'file', name: 'etc/passwd', content: `root:x:0:0:root:/root:/bin/sh\ncnb:x:${BUILD_USER}:${BUILD_USER}:cnb:/home/cnb:/bin/sh\n` },
    { type: 'directory', name: 'home' },
    { type: 'directory', name: 'home/cnb' },
  ]);
  const metadata = {
    description,
    images: [{ image: runImage }],
    stack: { runImage: { image: runImage, mirrors: [] } },
    buildpacks: [{ id: 'kontain-test/greeter', version: '0.0.1' }],
    lifecycle: { version: '0.0.0-stand-in', apis: { buildpack: { deprecated: [], supported: ['0.10'] }, platform: { deprecated: [], supported: ['0.12', '0.13', '0.14', '0.15'] } } },
  };
  await pushBusyboxBase(registry, 'test/builder', tag, {
    applets: APPLETS,
    layers: [cnb],
    config: {
      User: `${BUILD_USER}:${BUILD_USER}`,
      Env: ['PATH=/usr/local/bin:/usr/bin:/bin', `CNB_USER_ID=${BUILD_USER}`, `CNB_GROUP_ID=${BUILD_USER}`, 'HOME=/home/cnb'],
      Labels: { 'io.buildpacks.builder.metadata': JSON.stringify(metadata), 'io.buildpacks.stack.id': 'io.kontain.test' },
    },
  });
  return { builder: `${registry}/test/builder:${tag}`, runImage };
}
