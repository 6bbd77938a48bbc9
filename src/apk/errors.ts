/**
 * Why an APK index or package was refused. The generator turns each kind into a 4xx
 * whose message names the file; none of them is the server's fault.
 */
export type ApkFailure =
  /** No signature from a trusted key verifies. */
  | 'bad-signature'
  /** Control `C:` or `datahash` does not match. */
  | 'checksum-mismatch'
  /** Not a well-formed .apk / APKINDEX / config. */
  | 'malformed'
  /** Two packages install the same path and neither may overwrite the other. */
  | 'file-conflict'
  /** A repository, key or package could not be fetched (the message names the URL). */
  | 'fetch-failed'
  /** Larger than the configured limit. */
  | 'too-large';

export class ApkError extends Error {
  override name = 'ApkError';
  constructor(
    readonly failure: ApkFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
