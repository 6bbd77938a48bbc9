import { ACTIONABLE_STATUS, RegistryError, type ErrorCodeName } from '../registry/errors.js';
import { InvalidReferenceError, parseReference, type Reference } from '../remote/reference.js';
import { UpstreamError } from '../remote/errors.js';

/**
 * The upstream image a request names, for the hosts that start from another registry's
 * image (mirror, flatten, estargz).
 *
 * `busybox` → docker.io/library/busybox; `ghcr.io/o/r` → ghcr.io. A repository path cannot
 * carry `:`, so a registry port is written with a dash after the host:
 * `mirror/localhost-5000/foo` → localhost:5000/foo (a host's last label never ends in
 * `-<digits>`, so this cannot be mistaken for a real name). Repeated `<service>.<domain>/`
 * prefixes (`mirror.kontain.me/mirror.kontain.me/busybox`) are dropped, as kontain.me does.
 */
export function upstreamReference(service: string, domain: string, repository: string, reference: { tag?: string; digest?: string }): Reference {
  let path = repository;
  const selfPrefix = domain ? `${service}.${domain}/` : undefined;
  while (selfPrefix && path.startsWith(selfPrefix)) path = path.slice(selfPrefix.length);
  if (!path) {
    throw new RegistryError('NAME_INVALID', `name an upstream image after ${service}/, e.g. ${service}/busybox or ${service}/ghcr.io/owner/repo`);
  }
  const [first, ...rest] = path.split('/');
  path = [hostWithPort(first!), ...rest].join('/');
  const text = reference.digest ? `${path}@${reference.digest}` : `${path}:${reference.tag ?? 'latest'}`;
  try {
    return parseReference(text);
  } catch (err) {
    if (err instanceof InvalidReferenceError) throw new RegistryError('NAME_INVALID', err.message);
    throw err;
  }
}

/**
 * A host name written `host-port` in a repository path (`127.0.0.1-5000`, `localhost-8443`)
 * as `host:port`; anything else unchanged. Only a name with a dot, or `localhost`, can be a
 * host, and no real host's last label ends in `-<digits>`.
 */
export function hostWithPort(element: string): string {
  const withPort = /^((?:[a-z0-9-]+\.)*[a-z0-9-]+|localhost)-(\d{1,5})$/.exec(element);
  return withPort && (withPort[1]!.includes('.') || withPort[1] === 'localhost') ? `${withPort[1]}:${withPort[2]}` : element;
}

/** The kinds of upstream failure a client is told about; see UPSTREAM_ANSWERS. */
export type UpstreamFailureKind =
  | 'not-found'
  | 'unresolvable'
  | 'denied'
  | 'address-refused'
  | 'too-many-requests'
  | 'timeout'
  | 'unreachable'
  | 'server-error'
  | 'bad-content'
  | 'unexpected-answer';

/**
 * How every host (mirror, flatten, estargz, ko, apko, viz) answers each kind of upstream
 * failure: the one place to change a status or code. The message always names the
 * upstream and what it did. README "Upstream failures" lists the same table.
 */
export const UPSTREAM_ANSWERS: Record<UpstreamFailureKind, { code: ErrorCodeName; status: number }> = {
  // The upstream says the thing does not exist (the code is BLOB_UNKNOWN for a blob).
  'not-found': { code: 'MANIFEST_UNKNOWN', status: 404 },
  // The registry's host name does not exist: the name is unknown, retrying will not help.
  unresolvable: { code: 'NAME_UNKNOWN', status: 404 },
  denied: { code: 'DENIED', status: 403 },
  'address-refused': { code: 'DENIED', status: 403 },
  'too-many-requests': { code: 'TOOMANYREQUESTS', status: 429 },
  // The rest are 424, not 502/504: podman, skopeo and docker print the message of a 4xx
  // only (see ACTIONABLE_STATUS), and the message is what tells the user which upstream.
  // No answer in time, or a body slower than the minimum rate.
  timeout: { code: 'UNAVAILABLE', status: ACTIONABLE_STATUS.upstreamFailed },
  // Connection refused or reset, TLS failure, a DNS server that did not answer.
  unreachable: { code: 'UNAVAILABLE', status: ACTIONABLE_STATUS.upstreamFailed },
  'server-error': { code: 'UNAVAILABLE', status: ACTIONABLE_STATUS.upstreamFailed },
  // Content that is not what it claims: wrong digest or size, unusable manifest.
  'bad-content': { code: 'UNAVAILABLE', status: ACTIONABLE_STATUS.upstreamFailed },
  'unexpected-answer': { code: 'UNAVAILABLE', status: ACTIONABLE_STATUS.upstreamFailed },
};

/** Which kind of failure an UpstreamError is. */
export function upstreamFailureKind(err: UpstreamError): UpstreamFailureKind {
  if (err.code === 'ADDRESS_REFUSED') return 'address-refused';
  if (err.code === 'UNRESOLVABLE') return 'unresolvable';
  if (err.code === 'TIMEOUT') return 'timeout';
  if (err.code === 'DIGEST_INVALID' || err.code === 'SIZE_INVALID' || err.code === 'MANIFEST_INVALID' || err.code === 'RANGE_INVALID') return 'bad-content';
  if (err.status === 0) return 'unreachable';
  if (err.status === 404 || err.status === 410) return 'not-found';
  if (err.status === 401 || err.status === 403) return 'denied';
  if (err.status === 429) return 'too-many-requests';
  if (err.status === 504) return 'timeout';
  if (err.status >= 500) return 'server-error';
  return 'unexpected-answer';
}

/** The registry error a client should see for an upstream failure; it names the upstream. */
export function upstreamFailure(err: unknown, kind: 'manifest' | 'blob' = 'manifest'): RegistryError | undefined {
  if (!(err instanceof UpstreamError)) return undefined;
  const failure = upstreamFailureKind(err);
  const answer = UPSTREAM_ANSWERS[failure];
  const code = failure === 'not-found' && kind === 'blob' ? 'BLOB_UNKNOWN' : answer.code;
  const message = failure === 'bad-content' ? `${err.message} (nothing was stored)` : err.message;
  return new RegistryError(code, message, { status: answer.status });
}

/** Whether an error means "the upstream is down or broken", when a cached answer may stand in. */
export function isUpstreamOutage(err: unknown): boolean {
  if (!(err instanceof UpstreamError)) return false;
  return ['timeout', 'unreachable', 'unresolvable', 'server-error', 'too-many-requests'].includes(upstreamFailureKind(err));
}
