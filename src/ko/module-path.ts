/**
 * Go module paths as the module proxy protocol spells them (golang.org/ref/mod, "Module
 * proxies"): an upper-case letter travels as `!` and its lower-case form, because proxies
 * may sit on case-insensitive file systems.
 */
export function escapeModulePath(modulePath: string): string {
  return modulePath.replace(/[A-Z]/g, (c) => '!' + c.toLowerCase());
}

/** Versions are escaped the same way (a branch query may hold upper case). */
export const escapeVersion = escapeModulePath;

/**
 * The module paths that could hold a package, longest first: `a.b/c/d` → `a.b/c/d`,
 * `a.b/c`, `a.b` (the longest existing module wins, as the go command decides).
 */
export function modulePathCandidates(importPath: string): string[] {
  const parts = importPath.split('/');
  return parts.map((_, i) => parts.slice(0, parts.length - i).join('/'));
}

/**
 * An import path kontain will build: a first element with a dot (a host name; the
 * standard library and GOPATH-style paths cannot come from a proxy), then path elements
 * of the characters Go allows in module paths.
 */
export function isBuildableImportPath(importPath: string): boolean {
  const parts = importPath.split('/');
  if (parts.length === 0 || !parts[0]!.includes('.')) return false;
  return parts.every((part) => /^[A-Za-z0-9][A-Za-z0-9._~+-]*$/.test(part) && !part.endsWith('.') && part !== '..');
}
