import { RegistryError } from './errors.js';
import { isDigest, isSha256Digest } from '../oci/digest.js';

/** Repository name grammar of the distribution spec. */
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const MAX_NAME_LENGTH = 255;

export function checkName(name: string): void {
  if (name.length > MAX_NAME_LENGTH || !NAME.test(name)) {
    throw new RegistryError(
      'NAME_INVALID',
      `invalid repository name ${JSON.stringify(name)}: use lowercase letters, digits and the separators . _ __ - /, at most ${MAX_NAME_LENGTH} characters`,
      { detail: { name } },
    );
  }
}

export type Reference = { tag: string; digest?: undefined } | { digest: string; tag?: undefined };

/** A manifest reference of a pull: a tag, or a digest (anything with a `:`). */
export function parseReference(reference: string): Reference {
  if (reference.includes(':')) return { digest: checkDigest(reference) };
  if (!TAG.test(reference)) {
    // A pull of a tag that cannot exist is "unknown manifest" (404), as distribution and the
    // OCI conformance suite expect; TAG_INVALID is for pushes.
    throw new RegistryError(
      'MANIFEST_UNKNOWN',
      `no manifest can have the tag ${JSON.stringify(reference)}: a tag is 1-128 characters of letters, digits, _ . - and must not start with . or -`,
    );
  }
  return { tag: reference };
}

/** Returns the digest if it is a well-formed sha256 digest, else a DIGEST_INVALID error. */
export function checkDigest(digest: string): string {
  if (isSha256Digest(digest)) return digest;
  if (isDigest(digest) && !digest.startsWith('sha256:')) {
    throw new RegistryError('DIGEST_INVALID', `unsupported digest algorithm in ${JSON.stringify(digest)}: this registry serves sha256 digests only`);
  }
  throw new RegistryError('DIGEST_INVALID', `invalid digest ${JSON.stringify(digest)}: expected sha256: followed by 64 lowercase hex digits`);
}
