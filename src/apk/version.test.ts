import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareApkVersions, fuzzyMatchesApkVersion, isValidApkVersion } from './version.js';

// Each pair is [older, newer]; most are versions that appear in the Alpine 3.16 and Wolfi
// fixture indexes or in apk-tools' documented ordering.
const ORDERED: Array<[string, string]> = [
  ['1.2.3-r0', '1.2.3-r1'],
  ['1.2.3_rc1', '1.2.3'],
  ['1.2.3', '1.2.3_p1'],
  ['1.9', '1.10'],
  ['1.2', '1.2.0'],
  ['2.12-r0', '2.12-r1'],
  ['2.12-r1', '2.13-r0'],
  ['1.35.0-r2', '1.35.0-r17'],
  ['3.2.0-r22', '3.2.0-r23'],
  ['4603-r0', '4604-r0'],
  ['4604-r0', '4604-r1'],
  ['1.0.0', '1.0.0a'],
  ['1.0.0a', '1.0.0b'],
  ['1.0.0z', '1.0.1'],
  ['3.0.5-r2', '3.0.7-r0'],
  ['1.1.1q-r0', '1.1.1s-r0'],
  ['20220614-r0', '20220614-r1'],
  ['11.2.1-r9', '11.2.1_git20220219-r2'],
  ['11.2.1_git20220219-r2', '11.2.2'],
  ['6.3-r0', '6.3_p20220521-r0'],
  ['4.4.3-r5', '4.4.3_p1-r0'],
  ['1.0_rc1-r5', '1.0-r0'],
  ['1.0-r9', '1.0_p1'],
  ['1.0_alpha', '1.0_alpha1'],
  ['1.0_alpha1', '1.0_alpha2'],
  ['1.0_alpha9', '1.0_beta'],
  ['1.0_p1', '1.0_p1_p1'],
  ['1.0_rc1_p1', '1.0_rc2'],
  // After a dot, leading zeros read as a decimal fraction (perl module versions).
  ['1.000023', '1.0001'],
  ['1.01', '1.1'],
  ['1.000023', '1.000037'],
  // Real Alpine 3.16 versions with digits after the letter.
  ['6.8.0-r4', '6.8.0p2-r4'],
  ['6.8.0p2', '6.8.0p10'],
  ['0.99f-r0', '0.99f7-r0'],
  // Beyond 2^53: compared as digit strings, not floats.
  ['1.20220219000000000000', '1.20220219000000000001'],
  ['9007199254740993', '9007199254740994'],
  // A ~hash is more specific than nothing, less than a revision-only difference.
  ['1.0', '1.0~abc123'],
  ['1.0~abc123', '1.0~abc123-r1'],
];

test('real-world pairs order as apk orders them, in both directions', () => {
  for (const [older, newer] of ORDERED) {
    assert.equal(compareApkVersions(older, newer), -1, `${older} < ${newer}`);
    assert.equal(compareApkVersions(newer, older), 1, `${newer} > ${older}`);
  }
});

test('suffixes: _alpha < _beta < _pre < _rc < (none) < _cvs < _svn < _git < _hg < _p', () => {
  const chain = ['1.0_alpha', '1.0_beta', '1.0_pre', '1.0_rc', '1.0', '1.0_cvs', '1.0_svn', '1.0_git', '1.0_hg', '1.0_p'];
  for (let i = 0; i < chain.length; i++) {
    for (let j = 0; j < chain.length; j++) {
      assert.equal(compareApkVersions(chain[i]!, chain[j]!), Math.sign(i - j), `${chain[i]} vs ${chain[j]}`);
    }
  }
  // A shuffled copy sorts back into the chain.
  const shuffled = [chain[4], chain[9], chain[0], chain[6], chain[2], chain[8], chain[1], chain[5], chain[3], chain[7]] as string[];
  assert.deepEqual(shuffled.sort(compareApkVersions), chain);
});

test('equal versions compare 0; hashes carry no order', () => {
  for (const v of ['1.0-r0', '2.36-r0', '1.010', '6.8.0p2-r4', '20220614-r1', '1.0_p1_rc2-r3']) assert.equal(compareApkVersions(v, v), 0, v);
  assert.equal(compareApkVersions('1.0~abc-r1', '1.0~def-r1'), 0);
  assert.equal(compareApkVersions('01', '1'), 0, 'the first component is a plain number');
});

test('isValidApkVersion accepts the grammar and refuses the rest', () => {
  for (const v of ['1', '1.2.3', '1.0.0a', '1.2.3_rc1', '1.2.3_p', '2.12-r1', '1.35.0-r17', '3.2.0-r23', '4604-r0', '1.0~a1b2-r3', '11.2.1_git20220219-r2', '6.8.0p2-r4', '0.99f7-r0', '1.0_alpha1_p2']) {
    assert.ok(isValidApkVersion(v), v);
  }
  for (const v of ['', 'v2.4', 'a1', '1.', '.1', '1..0', '1.0-r', '1.0-r1-r2', '1.0_foo', '1.0ab', '1.0-1', '1.0~XYZ', '1.0 ', '1.0_rc1a', '1.0-r1_p1']) {
    assert.ok(!isValidApkVersion(v), JSON.stringify(v));
  }
});

test('malformed versions sort below valid ones and among themselves as strings, so sorting is total', () => {
  assert.equal(compareApkVersions('v2.4', '0.1'), -1);
  assert.equal(compareApkVersions('0.1', 'v2.4'), 1);
  assert.equal(compareApkVersions('v2.4', 'v2.5'), -1);
  assert.equal(compareApkVersions('v2.4', 'v2.4'), 0);
});

test('fuzzy (~) matching is component-wise, not string prefix', () => {
  for (const v of ['1.6', '1.6.0_pre1', '1.6.9_p1', '1.6-r3', '1.6.0']) assert.ok(fuzzyMatchesApkVersion(v, '1.6'), v);
  for (const v of ['1.60', '1.7', '1.5.9', '1', '2.6']) assert.ok(!fuzzyMatchesApkVersion(v, '1.6'), v);
  assert.ok(fuzzyMatchesApkVersion('1.6-r3', '1.6-r3'));
  assert.ok(!fuzzyMatchesApkVersion('1.6-r4', '1.6-r3'));
  assert.ok(!fuzzyMatchesApkVersion('v1.6', '1.6'));
});
