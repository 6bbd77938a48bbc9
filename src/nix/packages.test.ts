import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkResolution, parsePackages, SHELL_PACKAGES } from './packages.js';
import { RegistryError } from '../registry/errors.js';

test('packages are lowercased, sorted and deduplicated; shell expands to its packages', () => {
  assert.deepEqual(parsePackages('jq/git/jq'), { packages: ['git', 'jq'], shell: false });
  const shell = parsePackages('shell/git');
  assert.equal(shell.shell, true);
  assert.deepEqual(shell.packages, [...SHELL_PACKAGES.map((p) => p.toLowerCase()), 'git'].sort());
});

test('names that cannot be packages are NAME_INVALID; -- is kept for flake outputs', () => {
  for (const bad of ['flake--x', 'a..b', '.a', 'a.']) {
    assert.throws(() => parsePackages(bad), (err: unknown) => err instanceof RegistryError && err.code === 'NAME_INVALID', bad);
  }
});

test('unknown packages are named in MANIFEST_UNKNOWN', () => {
  assert.throws(
    () => checkResolution({ packages: ['git', 'nope'], shell: false }, { revision: '', packages: [{ path: ['git'], derivation: true }, null] }),
    (err: unknown) => err instanceof RegistryError && err.code === 'MANIFEST_UNKNOWN' && /nope/.test(err.message) && !/git/.test(err.message),
  );
});
