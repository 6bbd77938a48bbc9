/** Error codes of the distribution spec, with the HTTP status each is answered with. */
export const ErrorCode = {
  BLOB_UNKNOWN: 404,
  MANIFEST_UNKNOWN: 404,
  NAME_UNKNOWN: 404,
  NAME_INVALID: 400,
  TAG_INVALID: 400,
  DIGEST_INVALID: 400,
  MANIFEST_INVALID: 400,
  PAGINATION_NUMBER_INVALID: 400,
  RANGE_INVALID: 416,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  UNAVAILABLE: 503,
  UNKNOWN: 500,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

/**
 * Statuses for failures the person pulling can act on, chosen so that each client prints
 * the error body's message (read from their sources):
 *
 * - containers/image (podman, skopeo, buildah): parses the body of 400-499 answers only;
 *   for 5xx it prints "received unexpected HTTP status: " and the status line.
 * - docker (distribution client): the same 400-499 rule (with a JSON Content-Type); a tag
 *   is resolved with HEAD, then GET again to read an error's body.
 * - go-containerregistry (crane, ko): the body of any status, on GET; retries 5xx first.
 * - containerd (ctr, nerdctl, BuildKit, docker with the containerd store): resolves tags
 *   with HEAD, which has no body; 404 becomes "not found"; any other status prints the
 *   status line (2.x also the body of a GET).
 *
 * Hence: a 4xx status, not 404 when there is more to say than "not found", and the message
 * also in the status line's reason phrase (see reasonPhrase), which containerd and
 * containers/image print. HTTP/2 has no reason phrase: over it containerd shows the status.
 */
export const ACTIONABLE_STATUS = {
  /** An upstream (registry, Go module proxy) is down, failing or sent broken content. Not 502: podman and docker would hide why. */
  upstreamFailed: 424,
  /** The source cannot be built as it stands (compile error, packages that cannot be installed). */
  cannotBuild: 422,
} as const;

/** The longest reason phrase sent; the JSON body keeps the whole message. */
const MAX_REASON = 300;

/** An error's message as an HTTP/1.1 reason phrase: printable ASCII on one line. */
export function reasonPhrase(message: string): string {
  const line = message.replace(/\s+/g, ' ').replace(/[^\x20-\x7e]/g, '?').trim();
  return line.length > MAX_REASON ? `${line.slice(0, MAX_REASON - 3)}...` : line;
}

/** An error a client should see, as `{"errors":[{code,message,detail}]}` with its status. */
export class RegistryError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCodeName,
    message: string,
    options: { status?: number; detail?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = 'RegistryError';
    this.status = options.status ?? ErrorCode[code];
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }

  readonly detail: unknown;
  readonly headers: Record<string, string>;

  toJSON(): { errors: Array<{ code: string; message: string; detail?: unknown }> } {
    return { errors: [{ code: this.code, message: this.message, ...(this.detail === undefined ? {} : { detail: this.detail }) }] };
  }
}
