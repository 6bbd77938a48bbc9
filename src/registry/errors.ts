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
