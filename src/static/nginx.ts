import path from 'node:path';
import { findBlobFile, listRepositories, type StaticRepository } from './repository.js';

export interface NginxExportOptions {
  /** The tree to read. */
  root: string;
  /** Prepended to every name, as KONTAIN_STATIC_PREFIX does for the static host. */
  namePrefix?: string;
  /** Where nginx finds the tree (default: root); may be an nginx variable such as `$registry_root`. */
  serverRoot?: string;
}

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

function repositoryLocations(repo: StaticRepository, name: string, fileOf: (file: string) => string, blobFiles: Map<string, string>): string {
  const base = `/v2/${name}`;
  const parts: string[] = [];
  const tags = [...repo.tags.keys()].sort();
  parts.push(jsonLocation(`= ${base}/tags/list`, 200, JSON.stringify({ name, tags })));
  for (const tag of tags) {
    const manifest = repo.manifests.get(repo.tags.get(tag)!.digest)!;
    parts.push(fileLocation(`${base}/manifests/${tag}`, fileOf(manifest.path), manifest.mediaType, manifest.digest, '@kontain_manifest_unknown'));
  }
  for (const manifest of [...repo.manifests.values()].sort((a, b) => (a.digest < b.digest ? -1 : 1))) {
    parts.push(fileLocation(`${base}/manifests/${manifest.digest}`, fileOf(manifest.path), manifest.mediaType, manifest.digest, '@kontain_manifest_unknown'));
  }
  for (const [digest, file] of [...blobFiles].sort(([a], [b]) => (a < b ? -1 : 1))) {
    parts.push(fileLocation(`${base}/blobs/${digest}`, fileOf(file), 'application/octet-stream', digest, '@kontain_blob_unknown', ['add_header Cache-Control "max-age=31536000, immutable";']));
  }
  parts.push(jsonLocation(`^~ ${base}/manifests/`, 404, errorBody('MANIFEST_UNKNOWN', `manifest unknown to ${name}`, { name })));
  parts.push(jsonLocation(`^~ ${base}/blobs/`, 404, errorBody('BLOB_UNKNOWN', `blob unknown to ${name}`, { name })));
  return parts.join('');
}

/**
 * nginx locations serving the tree as the static host does, to `include` inside a
 * `server {}` block: exact locations per tag, manifest and blob of each repository
 * (so a blob is served only under names whose images reference it), JSON errors for
 * everything else under `/v2/`.
 */
export async function exportNginx(options: NginxExportOptions): Promise<string> {
  const root = path.resolve(options.root);
  const serverRoot = (options.serverRoot ?? root).replace(/\/+$/, '');
  const prefix = (options.namePrefix ?? '').replace(/^\/+|\/+$/g, '');
  const fileOf = (file: string) => `${serverRoot}/${path.relative(root, file).split(path.sep).join('/')}`;
  const out: string[] = [
    `# Made by kontain export nginx from ${root}${prefix ? ` with names under ${prefix}/` : ''}.`,
    '# Include inside a server {} block. Regenerate when the tree changes.',
    '',
    jsonLocation('= /v2', 200, '{}'),
    jsonLocation('= /v2/', 200, '{}'),
    jsonLocation('/v2/', 404, errorBody('NAME_UNKNOWN', 'repository name not known to registry')),
    jsonLocation('@kontain_manifest_unknown', 404, errorBody('MANIFEST_UNKNOWN', 'manifest unknown')),
    jsonLocation('@kontain_blob_unknown', 404, errorBody('BLOB_UNKNOWN', 'blob unknown')),
  ];
  for (const repo of await listRepositories(root)) {
    const blobFiles = new Map<string, string>();
    for (const [digest, paths] of repo.blobs) {
      const found = await findBlobFile(paths);
      if (found) blobFiles.set(digest, found.path);
    }
    out.push(repositoryLocations(repo, prefix ? `${prefix}/${repo.name}` : repo.name, fileOf, blobFiles));
  }
  return out.join('\n');
}
