/**
 * The one error type the registry client throws for anything an upstream did or failed
 * to do, so callers can map it to their own answer (404 → MANIFEST_UNKNOWN, 401/403 →
 * DENIED, 429 → TOOMANYREQUESTS) and say which upstream failed.
 */
export class UpstreamError extends Error {
  override name = 'UpstreamError';
  /** Registry host as written in the reference, e.g. `docker.io` or `127.0.0.1:5000`. */
  readonly registry: string;
  /** HTTP status the upstream answered; 0 when there was no answer (refused, unreachable, timed out). */
  readonly status: number;
  /**
   * The registry error code from the upstream's error body (`MANIFEST_UNKNOWN`, …) when it
   * sent one; otherwise one of the client's own: `DIGEST_INVALID` (content does not match its
   * digest), `SIZE_INVALID` (short or long read), `MANIFEST_INVALID` (unusable manifest),
   * `UNRESOLVABLE` (the host name does not exist in DNS), `UNREACHABLE` (connection or DNS
   * lookup failed), `TIMEOUT` (answer or body too slow: no headers or
   * no data within the stall time, or below the minimum rate), `ADDRESS_REFUSED` (address
   * not allowed).
   */
  readonly code?: string;

  constructor(init: { registry: string; status: number; code?: string; message: string; cause?: unknown }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.registry = init.registry;
    this.status = init.status;
    this.code = init.code;
  }
}

/** The first `{code, message}` of a distribution error body, if the body is one. */
export function parseErrorBody(body: Buffer | undefined): { code?: string; message?: string } {
  if (!body || body.length === 0) return {};
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    const first = Array.isArray(parsed.errors) ? parsed.errors[0] : undefined;
    if (!first) return {};
    return {
      code: typeof first.code === 'string' ? first.code : undefined,
      message: typeof first.message === 'string' ? first.message : undefined,
    };
  } catch {
    return {};
  }
}

/** An UpstreamError for an HTTP answer, with a message naming the upstream and what it said. */
export function errorFromResponse(registry: string, what: string, status: number, body?: Buffer): UpstreamError {
  const { code, message } = parseErrorBody(body);
  const said = [code, message].filter(Boolean).join(': ') || statusText(status);
  return new UpstreamError({ registry, status, code, message: `upstream ${registry} answered ${status} to ${what}: ${said}` });
}

function statusText(status: number): string {
  switch (status) {
    case 401:
      return 'authentication required';
    case 403:
      return 'access denied';
    case 404:
      return 'not found';
    case 429:
      return 'too many requests';
    default:
      return status >= 500 ? 'server error' : 'unexpected status';
  }
}
