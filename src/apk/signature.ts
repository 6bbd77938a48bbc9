/**
 * APK v2 signatures: `.SIGN.RSA.<key>` is RSA PKCS#1 v1.5 over SHA-1, `.SIGN.RSA256.<key>`
 * the same over SHA-256, both of the compressed bytes of the next gzip member. The key
 * is found by file name; one valid signature from a trusted key is enough, signatures by
 * unknown keys or in unknown algorithms are skipped.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { ApkError } from './errors.js';
import type { TarFragmentEntry } from './tar-fragment.js';

/** A trusted public key: its file name (as written into `/etc/apk/keys/`) and PEM text. */
export interface ApkPublicKey {
  name: string;
  pem: string;
}

export interface ApkSignature {
  /** `RSA`, `RSA256`, … as written in the entry name. */
  algorithm: string;
  keyName: string;
  signature: Buffer;
}

const DIGESTS: Record<string, string> = { RSA: 'sha1', RSA256: 'sha256', RSA512: 'sha512' };

/** The `.SIGN.*` entries of a signature member; an empty list means "not a signature member". */
export function signaturesOf(entries: TarFragmentEntry[]): ApkSignature[] {
  const out: ApkSignature[] = [];
  for (const entry of entries) {
    const match = /^\.SIGN\.([A-Z0-9]+)\.(.+)$/.exec(entry.name);
    if (match) out.push({ algorithm: match[1]!, keyName: match[2]!, signature: Buffer.from(entry.data) });
  }
  return out;
}

/**
 * Key file names compared without their `.rsa.pub` / `.pub` ending: proxies and keyring
 * URLs sometimes drop it, and apko accepts both spellings.
 */
export function keyBaseName(name: string): string {
  const base = name.slice(name.lastIndexOf('/') + 1);
  return base.replace(/\.rsa\.pub$/, '').replace(/\.pub$/, '');
}

const parsedKeys = new WeakMap<ApkPublicKey, KeyObject | null>();

function keyObject(key: ApkPublicKey): KeyObject | null {
  let parsed = parsedKeys.get(key);
  if (parsed === undefined) {
    try {
      parsed = createPublicKey(key.pem);
    } catch {
      parsed = null;
    }
    parsedKeys.set(key, parsed);
  }
  return parsed;
}

/**
 * The name of the key whose signature over `signed` verifies; throws ApkError
 * ('bad-signature') naming `what` and the keys tried when none does.
 */
export function verifySignatures(signatures: ApkSignature[], signed: Buffer, keyring: readonly ApkPublicKey[], what: string): string {
  if (signatures.length === 0) throw new ApkError('bad-signature', `${what} is not signed`);
  const tried: string[] = [];
  for (const sig of signatures) {
    const digest = DIGESTS[sig.algorithm];
    if (!digest) continue;
    for (const key of keyring) {
      if (keyBaseName(key.name) !== keyBaseName(sig.keyName)) continue;
      const object = keyObject(key);
      if (!object) continue;
      tried.push(sig.keyName);
      if (verify(digest, signed, object, sig.signature)) return key.name;
    }
  }
  const names = signatures.map((s) => `${s.algorithm}/${s.keyName}`).join(', ');
  throw new ApkError(
    'bad-signature',
    tried.length > 0
      ? `${what}: signature by ${names} does not verify with the trusted key`
      : `${what} is signed by ${names}, which is not in the trusted keyring (${keyring.map((k) => k.name).join(', ') || 'empty'})`,
  );
}
