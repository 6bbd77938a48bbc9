import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAdvertisement, LsRemoteFailed, LsRemoteNotFound } from './ls-remote.js';

const pkt = (text: string) => `${(Buffer.byteLength(text) + 4).toString(16).padStart(4, '0')}${text}`;
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

test('a git daemon advertisement: HEAD with capabilities, branches, tags and peeled tags', () => {
  const body = pkt(`${A} HEAD\0multi_ack thin-pack symref=HEAD:refs/heads/main\n`) + pkt(`${A} refs/heads/main\n`) + pkt(`${B} refs/tags/v1\n`) + pkt(`${C} refs/tags/v1^{}\n`) + '0000';
  const refs = parseAdvertisement(Buffer.from(body), false, 'git://x/r');
  assert.deepEqual([...refs], [['HEAD', A], ['refs/heads/main', A], ['refs/tags/v1', B], ['refs/tags/v1^{}', C]]);
});

test('a smart HTTP advertisement starts with the service line and a flush', () => {
  const body = pkt('# service=git-upload-pack\n') + '0000' + pkt(`${A} HEAD\0caps\n`) + pkt(`${B} refs/heads/dev\n`) + '0000';
  const refs = parseAdvertisement(Buffer.from(body), true, 'https://x/r');
  assert.equal(refs.get('refs/heads/dev'), B);
  assert.throws(() => parseAdvertisement(Buffer.from(pkt(`${A} HEAD\n`) + '0000'), true, 'https://x/r'), LsRemoteFailed);
});

test('an empty repository, a missing one, an ERR line and garbage', () => {
  const empty = parseAdvertisement(Buffer.from(pkt(`${'0'.repeat(40)} capabilities^{}\0caps\n`) + '0000'), false, 'r');
  assert.equal(empty.size, 0);
  assert.throws(() => parseAdvertisement(Buffer.alloc(0), false, 'r'), LsRemoteNotFound);
  assert.throws(() => parseAdvertisement(Buffer.from(pkt('ERR access denied or repository not exported: /x\n')), false, 'r'), LsRemoteNotFound);
  assert.throws(() => parseAdvertisement(Buffer.from('zzzz'), false, 'r'), LsRemoteFailed);
  assert.throws(() => parseAdvertisement(Buffer.from('00ff short'), false, 'r'), LsRemoteFailed);
});
