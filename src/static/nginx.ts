import path from 'node:path';
import { BlobFiles } from './blob-file.js';
import { ConfinedRoot, TreeProblem } from './confined.js';
import { listRepositories, type StaticRepository } from './repository.js';

export interface NginxExportOptions {
  /** The tree to read. */
  root: string;
  /** Prepended to every name, as KONTAIN_STATIC_PREFIX does for the static host. */
  namePrefix?: string;
  /** Where nginx finds the tree (default: root); may be an nginx variable such as `$registry_root`. */
  serverRoot?: string;
  /** Told of each tag, manifest, blob or directory left out of the export, and why. */
  skipped?: (problem: string) => void;
}

/**
 * Characters a file's path below the root may have in the configuration: nginx would read
 * `$` as a variable, and quotes, backslashes or newlines could end the string early.
 */
const PLAIN_PATH = /^[A-Za-z0-9._\/+@=,~-]+$/;

const API_VERSION = 'add_header Docker-Distribution-API-Version registry/2.0 always;';

/** A double-quoted nginx string; `$` is left alone so a server root may be a variable. */
const quote = (value: string) => `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
/** A single-quoted nginx string for `return` bodies. */
const literal = (value: string) => `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;

function errorBody(code: string, message: string, detail?: Record<string, string>): string {
  return JSON.stringify({ errors: [{ code, message, ...(detail ? { detail } : {}) }] });
}

/** A location answering with a fixed JSON body (errors, tag lists, the API check). */
function jsonLocation(match: string, status: number, body: string): string {
  return [`location ${match} {`, '    types { } default_type application/json;', `    ${API_VERSION}`, `    return ${status} ${literal(body)};`, '}', ''].join('\n');
}

/**
 * A location serving one file with the registry's headers. `add_header` in a location
 * replaces every inherited one, so each location names all of its own; `always` keeps
 * the API version on error answers too. nginx answers HEAD and Range for files itself.
 */
function fileLocation(uri: string, file: string, contentType: string, digest: string, missing: string, extra: string[] = []): string {
  return [
    `location = ${uri} {`,
    `    alias ${quote(file)};`,
    `    types { } default_type ${contentType};`,
    '    etag off;',
    `    add_header Docker-Content-Digest ${digest};`,
    `    add_header ETag '"${digest}"';`,
    ...extra.map((line) => `    ${line}`),
    `    ${API_VERSION}`,
    `    error_page 404 = ${missing};`,
    '}',
    '',
  ].join('\n');
}

function repositoryLocations(repo: StaticRepository, name: string, files: Map<string, string>, blobFiles: Map<string, string>): string {
  const base = `/v2/${name}`;
  const parts: string[] = [];
  const tags = [...repo.tags.keys()].sort();
  parts.push(jsonLocation(`= ${base}/tags/list`, 200, JSON.stringify({ name, tags })));
  for (const tag of tags) {
    const manifest = repo.manifests.get(repo.tags.get(tag)!.digest)!;
    const file = files.get(manifest.digest);
    if (file) parts.push(fileLocation(`${base}/manifests/${tag}`, file, manifest.mediaType, manifest.digest, '@kontain_manifest_unknown'));
  }
  for (const manifest of [...repo.manifests.values()].sort((a, b) => (a.digest < b.digest ? -1 : 1))) {
    const file = files.get(manifest.digest);
    if (file) parts.push(fileLocation(`${base}/manifests/${manifest.digest}`, file, manifest.mediaType, manifest.digest, '@kontain_manifest_unknown'));
  }
  for (const [digest, file] of [...blobFiles].sort(([a], [b]) => (a < b ? -1 : 1))) {
    parts.push(fileLocation(`${base}/blobs/${digest}`, file, 'application/octet-stream', digest, '@kontain_blob_unknown', ['add_header Cache-Control "max-age=31536000, immutable";']));
  }
  parts.push(jsonLocation(`^~ ${base}/manifests/`, 404, errorBody('MANIFEST_UNKNOWN', `manifest unknown to ${name}`, { name })));
  parts.push(jsonLocation(`^~ ${base}/blobs/`, 404, errorBody('BLOB_UNKNOWN', `blob unknown to ${name}`, { name })));
  return parts.join('');
}

/**
 * nginx locations serving the tree as the static host does, to `include` inside a
 * `server {}` block: exact locations per tag, manifest and blob of each repository
 * (so a blob is served only under names whose images reference it), JSON errors for
 * everything else under `/v2/`. The export is held to the static host's checks: what
 * leads out of the root, is not a regular file, or does not match its digest (every blob
 * is hashed) gets no location, and is passed to `skipped`. Locations name real paths
 * (symlinks inside the root resolved), so nginx follows no symlink of the tree.
 */
export async function exportNginx(options: NginxExportOptions): Promise<string> {
  const confined = new ConfinedRoot(path.resolve(options.root));
  const realRoot = await confined.realRoot();
  const skipped = options.skipped ?? (() => undefined);
  const serverRoot = (options.serverRoot ?? confined.root).replace(/\/+$/, '');
  const prefix = (options.namePrefix ?? '').replace(/^\/+|\/+$/g, '');
  /** Where nginx finds a real path of the tree; undefined (and skipped) when the path cannot be written plainly. */
  const fileOf = (real: string) => {
    const relative = path.relative(realRoot, real).split(path.sep).join('/');
    if (PLAIN_PATH.test(relative)) return `${serverRoot}/${relative}`;
    skipped(`${JSON.stringify(relative)} has characters the export does not write into an nginx configuration; it is left out`);
    return undefined;
  };
  const out: string[] = [
    `# Made by kontain export nginx from ${confined.root}${prefix ? ` with names under ${prefix}/` : ''}.`,
    '# Include inside a server {} block. Regenerate when the tree changes.',
    '',
    jsonLocation('= /v2', 200, '{}'),
    jsonLocation('= /v2/', 200, '{}'),
    jsonLocation('/v2/', 404, errorBody('NAME_UNKNOWN', 'repository name not known to registry')),
    jsonLocation('@kontain_manifest_unknown', 404, errorBody('MANIFEST_UNKNOWN', 'manifest unknown')),
    jsonLocation('@kontain_blob_unknown', 404, errorBody('BLOB_UNKNOWN', 'blob unknown')),
  ];
  const checker = new BlobFiles(confined);
  for (const repo of await listRepositories(confined, skipped)) {
    for (const [tag, broken] of repo.brokenTags) skipped(`${repo.name}:${tag}: ${broken.problem}`);
    for (const [digest, broken] of repo.brokenManifests) skipped(`${repo.name}@${digest}: ${broken.problem}`);
    for (const broken of repo.problems) skipped(`${repo.name}: ${broken.problem}`);
    const files = new Map<string, string>();
    for (const manifest of repo.manifests.values()) {
      const real = await confined.resolve(manifest.path).catch((err: unknown) => void skipped(`${repo.name}@${manifest.digest}: ${(err as Error).message}`));
      const file = real && fileOf(real);
      if (file) files.set(manifest.digest, file);
    }
    const blobFiles = new Map<string, string>();
    for (const [digest, locations] of repo.blobs) {
      try {
        const found = await checker.find(digest, locations);
        if (!found) continue;
        if (!(await checker.verify(digest, found))) throw new TreeProblem(`${path.relative(realRoot, found.path)} does not hash to ${digest}; it is left out`);
        const file = fileOf(found.path);
        if (file) blobFiles.set(digest, file);
      } catch (err) {
        if (!(err instanceof TreeProblem)) throw err;
        skipped(`${repo.name}@${digest}: ${err.message}`);
      }
    }
    out.push(repositoryLocations(repo, prefix ? `${prefix}/${repo.name}` : repo.name, files, blobFiles));
  }
  return out.join('\n');
}
