/**
 * `nix/<pkg>/<pkg>/...` names, with Nixery's conventions: `shell` stands for an
 * interactive shell's packages, dots name nested attributes (`python3packages.numpy`),
 * top-level and nested names match case-insensitively (registry names are lowercase),
 * and the packages are sorted and deduplicated so that equal sets give equal images.
 */
import { RegistryError } from '../registry/errors.js';

/** Nixery's `shell` meta-package. */
export const SHELL_PACKAGES = ['bashInteractive', 'cacert', 'coreutils', 'iana-etc', 'moreutils', 'nano'];

/** The segment prefix of flake outputs; package names never hold `--`, so it cannot clash. */
export const FLAKE_PREFIX = 'flake--';

export interface PackageRequest {
  /** Requested names, lowercase, sorted, deduplicated, `shell` expanded. */
  packages: string[];
  /** `shell` was asked for: the image's command is bash. */
  shell: boolean;
}

const PACKAGE_NAME = /^[a-z0-9_][a-z0-9_+.-]*$/;
const MAX_PACKAGES = 100;

export function parsePackages(repository: string): PackageRequest {
  const segments = repository.split('/').filter(Boolean);
  if (segments.length === 0) throw new RegistryError('NAME_INVALID', 'name packages after nix/, e.g. nix/shell/git, or a flake output: nix/flake--<attr>');
  if (segments.length > MAX_PACKAGES) throw new RegistryError('NAME_INVALID', `at most ${MAX_PACKAGES} packages per image (got ${segments.length})`);
  let shell = false;
  const names = new Set<string>();
  for (const segment of segments) {
    const name = segment.toLowerCase();
    if (!PACKAGE_NAME.test(name) || name.includes('--') || name.split('.').some((part) => part === '')) {
      throw new RegistryError('NAME_INVALID', `${segment} is not a package name (letters, digits, _ + - and dots between attribute names; never --)`);
    }
    if (name === 'shell') {
      shell = true;
      for (const p of SHELL_PACKAGES) names.add(p.toLowerCase());
    } else names.add(name);
  }
  return { packages: [...names].sort(), shell };
}

/**
 * A Nix function that resolves requested attribute paths case-insensitively in the
 * package set: each to its real attribute path and whether it is a derivation, or null.
 * Nix has no toLower builtin; replaceStrings over the alphabet is one.
 */
export function resolverExpression(packageSet: string): string {
  const upper = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].map((c) => `"${c}"`).join(' ');
  const lower = upper.toLowerCase();
  return `{ requested }:
let
  pkgs = (${packageSet});
  lower = builtins.replaceStrings [ ${upper} ] [ ${lower} ];
  find = set: name:
    if builtins.hasAttr name set then name
    else let hits = builtins.filter (n: lower n == name) (builtins.attrNames set);
    in if hits == [ ] then null else builtins.head hits;
  step = acc: name:
    if acc == null || !(builtins.isAttrs acc.value) then null
    else let real = find acc.value name; in
      if real == null then null else { value = builtins.getAttr real acc.value; path = acc.path ++ [ real ]; };
  resolve = parts: builtins.foldl' step { value = pkgs; path = [ ]; } parts;
  revision = if pkgs ? lib.trivial.revisionWithDefault then pkgs.lib.trivial.revisionWithDefault "" else "";
in {
  inherit revision;
  packages = map (parts: let r = resolve parts; in
    if r == null then null else { path = r.path; derivation = (r.value.type or null) == "derivation"; })
    (builtins.fromJSON requested);
}`;
}

/** A Nix function building the given attribute paths of the package set. */
export function buildExpression(packageSet: string): string {
  return `{ attrs }:
let pkgs = (${packageSet});
in map (path: builtins.foldl' (set: name: builtins.getAttr name set) pkgs path) (builtins.fromJSON attrs)`;
}

export interface Resolution {
  revision: string;
  packages: Array<{ path: string[]; derivation: boolean } | null>;
}

/** Throws MANIFEST_UNKNOWN naming every package the set does not have. */
export function checkResolution(request: PackageRequest, resolution: Resolution): string[][] {
  const unknown = request.packages.filter((_, i) => resolution.packages[i] == null);
  if (unknown.length > 0) throw new RegistryError('MANIFEST_UNKNOWN', `unknown package${unknown.length > 1 ? 's' : ''} in the package set: ${unknown.join(', ')}`);
  const notPackages = request.packages.filter((_, i) => !resolution.packages[i]!.derivation);
  if (notPackages.length > 0) throw new RegistryError('MANIFEST_UNKNOWN', `not a package (a derivation) in the package set: ${notPackages.join(', ')}`);
  return resolution.packages.map((p) => p!.path);
}
