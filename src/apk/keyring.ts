/**
 * Public keys for a build, from URLs or (operator-configured only) file paths. A key's
 * name is the last segment of where it came from: that is the name signatures carry and
 * the file name it gets under /etc/apk/keys/.
 */
import { pathToFileURL } from 'node:url';
import type { ApkFetcher, Trust } from './fetch.js';
import type { ApkPublicKey } from './signature.js';

const MAX_KEY_BYTES = 64 * 1024;

/** A URL for a keyring or repository entry: absolute paths become file:// URLs. */
export function sourceURL(source: string): string {
  return source.startsWith('/') ? pathToFileURL(source).href : source;
}

export async function loadKeyring(fetcher: ApkFetcher, sources: readonly string[], trust: Trust): Promise<ApkPublicKey[]> {
  return Promise.all(
    sources.map(async (source) => {
      const url = sourceURL(source);
      const bytes = await fetcher.bytes({ url, trust, maxBytes: MAX_KEY_BYTES, what: `signing key ${source}` });
      const name = decodeURIComponent(new URL(url).pathname.split('/').pop() || 'key.rsa.pub');
      return { name, pem: bytes.toString('utf8') };
    }),
  );
}
