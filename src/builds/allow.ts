/**
 * KONTAIN_BUILD_ALLOW: which `owner/repo` may be built. Patterns are `owner/repo` with
 * `*` matching any run of characters within one part (`myorg/*`, `acme/tool-*`); the
 * default, no patterns, allows nothing, since a build runs the repository's own code.
 */
export function isAllowedRepository(patterns: readonly string[], name: string): boolean {
  const lower = name.toLowerCase();
  return patterns.some((pattern) => patternRegExp(pattern).test(lower));
}

function patternRegExp(pattern: string): RegExp {
  const body = pattern
    .toLowerCase()
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&'))
    .join('[^/]*');
  return new RegExp(`^${body}$`);
}
