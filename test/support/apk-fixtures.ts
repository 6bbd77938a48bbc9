/** Paths to the real APK fixtures in test/fixtures/apk, from source or from dist/. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sourceTreeDir } from './source-tree.js';
import type { ApkPublicKey } from '../../src/apk/signature.js';
import { splitGzipMembers } from '../../src/apk/gzip-members.js';
import { parseApkIndexText } from '../../src/apk/index-file.js';
import { readTarFragment } from '../../src/apk/tar-fragment.js';
import type { ApkPackage } from '../../src/apk/types.js';

export const APK_FIXTURES = sourceTreeDir(path.join('test', 'fixtures', 'apk'), 'README.md');

export const apkFixturePath = (relative: string): string => path.join(APK_FIXTURES, relative);
export const apkFixture = (relative: string): Buffer => readFileSync(apkFixturePath(relative));

/** A fixture public key as a keyring entry named by its file name. */
export function fixtureKey(relative: string): ApkPublicKey {
  return { name: path.basename(relative), pem: apkFixture(relative).toString('utf8') };
}

/** The package records of a fixture APKINDEX.tar.gz (signature not checked: the tests of the resolver read data only). */
export function fixtureIndexPackages(relative: string, repository = 'fixture'): ApkPackage[] {
  const unsigned = splitGzipMembers(apkFixture(relative))[1]!.data;
  const text = readTarFragment(unsigned).find((e) => e.name === 'APKINDEX')!.data.toString('utf8');
  return parseApkIndexText(text, repository);
}
