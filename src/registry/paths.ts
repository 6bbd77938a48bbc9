/**
 * Parses a `/v2/...` path. Repository names contain `/`, so the route is read from the
 * right: the last `/manifests/`, `/blobs/`, `/tags/list` or `/referrers/` decides.
 */
export type RegistryPath =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'upload'; name: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string }
  | { kind: 'unknown' };

const ROUTES: Array<[RegExp, (m: RegExpExecArray) => RegistryPath]> = [
  [/^\/v2\/?$/, () => ({ kind: 'base' })],
  [/^\/v2\/_catalog$/, () => ({ kind: 'catalog' })],
  [/^\/v2\/(.+)\/blobs\/uploads(?:\/.*)?$/, (m) => ({ kind: 'upload', name: m[1]! })],
  [/^\/v2\/(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1]!, reference: m[2]! })],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1]!, digest: m[2]! })],
  [/^\/v2\/(.+)\/tags\/list$/, (m) => ({ kind: 'tags', name: m[1]! })],
  [/^\/v2\/(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1]!, digest: m[2]! })],
];

export function parseRegistryPath(path: string): RegistryPath {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return { kind: 'unknown' };
  }
  for (const [pattern, build] of ROUTES) {
    const match = pattern.exec(decoded);
    if (match) return build(match);
  }
  return { kind: 'unknown' };
}
